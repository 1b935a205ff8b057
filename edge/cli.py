"""`isowatch detect`, `isowatch calibrate` and `isowatch check-door`: replay footage through the detector,
save a camera's reference and taught door, check a new door in the field."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import cv2

from edge.camera_config import CameraConfig, DetectorSettings
from edge.camera_toml import CameraConfigError, load_camera_config, save_camera_config
from edge.contact_sheet import ContactSheet
from edge.door_teach import TaughtDoor, TeachRefused, teach_door
from edge.door_watch import DoorClosed, DoorOpened, DoorWatcher, FrameError, TamperEnded, TamperStarted
from edge.replay import DoorInterval, Interval, VideoError, probe, replay, video_frames


def parse_roi(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter("expected X,Y,W,H as four integers, e.g. 150,60,210,400") from None
    if x < 0 or y < 0 or w < 8 or h < 8:
        raise click.BadParameter("X and Y must be >= 0, W and H >= 8")
    return x, y, w, h


def _roi_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int, int, int] | None:
    return None if value is None else parse_roi(value)


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def table_row(interval: Interval) -> str:
    if isinstance(interval, DoorInterval):
        duration = "" if interval.end_s is None else f"{interval.end_s - interval.start_s:.2f}"
        note = "exit suspected" if interval.exit_suspected else ""
        return f"{'door_open':<14}{_fmt(interval.start_s):>8}{_fmt(interval.end_s):>8}{duration:>9}  {note}"
    return f"{'camera_tamper':<14}{_fmt(interval.start_s):>8}{_fmt(interval.end_s):>8}{'':>9}  {interval.reason}"


TABLE_HEADER = f"{'event':<14}{'start_s':>8}{'end_s':>8}{'length_s':>9}  detail"


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--roi", callback=_roi_option, help="Door region X,Y,W,H in pixels (else from --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="Edge TOML with a [camera] section.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--fps", type=float, help="Frame rate, when the file does not say.")
@click.option("--use-reference/--first-frame", default=False, show_default=True,
              help="Compare with the calibrated reference frame from --config instead of the clip's first frame.")
def detect(video: Path, roi: tuple[int, int, int, int] | None, config_path: Path | None, as_json: bool,
           fps: float | None, use_reference: bool) -> None:
    """Replay VIDEO through the door detector and print door openings and camera tampering.

    Times are seconds from the clip start. The clip's first frame is taken as the closed door unless
    --use-reference is given. A door taught by `calibrate --teach` in --config is used too.
    Installers tune a camera by replaying its footage here.
    """
    settings: DetectorSettings = DetectorSettings()
    reference = None
    teach = None
    if config_path is not None:
        try:
            config = load_camera_config(config_path)
        except CameraConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        settings = config.settings()
        teach = _load_teach(config.teach)
        roi = roi or config.roi
        if use_reference and config.reference_frame is not None:
            reference = cv2.imread(str(config.reference_frame))
            if reference is None:
                raise click.ClickException(f"cannot read reference frame {config.reference_frame}")
    if roi is None:
        raise click.UsageError("give --roi X,Y,W,H or --config with a [camera] section")
    try:
        info = probe(video, fps)
        if as_json:
            for interval in replay(video, roi, settings, fps=fps, reference=reference, teach=teach):
                click.echo(json.dumps(interval.as_json()))
            return
        rows = []
        with click.progressbar(length=info.frames or 1, label=f"{video.name} @ {info.fps:g} fps", file=sys.stderr) as bar:
            for interval in replay(video, roi, settings, fps=fps, reference=reference, teach=teach,
                                   on_frame=lambda _: bar.update(1)):
                rows.append(interval)
    except (VideoError, FrameError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(TABLE_HEADER)
    for interval in sorted(rows, key=lambda i: i.start_s):
        click.echo(table_row(interval))
    if not rows:
        click.echo("(no door openings or tampering)")


def grab_frame(source: str, at_s: float) -> tuple["cv2.typing.MatLike", str]:
    """A frame from a video file (at `at_s`) or a camera device (a number, or /dev/videoN)."""
    device: int | str = int(source) if source.isdigit() else source
    capture = cv2.VideoCapture(device)
    try:
        if not capture.isOpened():
            raise click.ClickException(f"cannot open {source}")
        if at_s > 0 and not isinstance(device, int):
            capture.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
        ok, frame = capture.read()
        if not ok or frame is None:
            raise click.ClickException(f"no frame from {source}")
        return frame, source
    finally:
        capture.release()


def _load_teach(path: Path | None) -> TaughtDoor | None:
    if path is None:
        return None
    try:
        return TaughtDoor.load(path)
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"cannot read the taught door {path}: {exc}") from exc


def teach_frames(source: str, at_s: float, seconds: float) -> list["cv2.typing.MatLike"]:
    """Frames from `at_s` on: to the end of a video file, or `seconds` of a camera device."""
    device: int | str = int(source) if source.isdigit() else source
    capture = cv2.VideoCapture(device)
    frames: list[cv2.typing.MatLike] = []
    try:
        if not capture.isOpened():
            raise click.ClickException(f"cannot open {source}")
        if isinstance(device, int):
            rate = capture.get(cv2.CAP_PROP_FPS) or 10.0
            limit = int(seconds * rate)
        else:
            if at_s > 0:
                capture.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
            limit = -1
        while limit < 0 or len(frames) < limit:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames


@click.command()
@click.option("--source", required=True, help="Video file or camera device (0, /dev/video0) showing the door closed.")
@click.option("--roi", required=True, callback=_roi_option, help="Door region X,Y,W,H in pixels.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("edge.toml"),
              show_default=True, help="Edge TOML to write the [camera] section into (created if missing).")
@click.option("--at", "at_s", type=float, default=0.0, show_default=True, help="Seconds into a video file to take the frame from.")
@click.option("--teach", is_flag=True,
              help="Also learn this door open: after the closed frame, open the door wide and close it again once.")
@click.option("--teach-seconds", type=float, default=20.0, show_default=True,
              help="With --teach on a camera device: seconds to record (a video file is read to its end).")
def calibrate(source: str, roi: tuple[int, int, int, int], config_path: Path, at_s: float, teach: bool,
              teach_seconds: float) -> None:
    """Save a reference frame of the closed door and the door ROI to the edge config.

    Writes REFERENCE as <config>-reference.png beside the config and a [camera] section with the ROI
    and the detector's default knobs; other sections of the file are kept as they are. With --teach,
    the door must be closed at --at and then opened and closed once: what open looks like for this
    door is saved as <config>-teach.npz, with how well open and closed separate. A teach that cannot
    tell them apart is refused with the reason (too dark, door not visible, no opening seen, ROI
    misses the leaf, open and closed alike) and nothing is written. Without --teach, a previous
    teach is dropped (it belongs to the old reference and ROI).
    """
    frame, _ = grab_frame(source, at_s)
    height, width = frame.shape[:2]
    x, y, w, h = roi
    if x + w > width or y + h > height:
        raise click.ClickException(f"roi {x},{y},{w},{h} lies outside the {width}x{height} frame")
    previous = {}
    if config_path.exists():
        try:
            previous = load_camera_config(config_path).model_dump(exclude={"roi", "reference_frame", "source", "teach"})
        except CameraConfigError:
            previous = {}  # no or broken [camera] section: start from defaults
    taught = None
    if teach:
        try:
            taught = teach_door(teach_frames(source, at_s, teach_seconds), roi, frame, DetectorSettings(**previous))
        except TeachRefused as exc:
            raise click.ClickException(f"calibration refused, nothing written: {exc}") from exc
    reference = config_path.with_name(f"{config_path.stem}-reference.png")
    taught_path = config_path.with_name(f"{config_path.stem}-teach.npz")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(reference), frame):
        raise click.ClickException(f"cannot write {reference}")
    if taught is not None:
        taught.save(taught_path)
    config = CameraConfig(**previous, roi=roi, reference_frame=Path(reference.name), source=source,
                          teach=Path(taught_path.name) if taught is not None else None)
    try:
        save_camera_config(config_path, config)
    except CameraConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"saved {reference} ({width}x{height}) and [camera] roi={x},{y},{w},{h} in {config_path}")
    if taught is not None:
        click.echo(f"taught {taught_path}: {taught.describe()}")


@click.command("check-door")
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--roi", callback=_roi_option, help="Door region X,Y,W,H in pixels (else from --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Edge TOML with a [camera] section (its knobs and taught door are used).")
@click.option("--teach", "teach_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A taught door (.npz from `calibrate --teach`); overrides the one in --config.")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path),
              help="Contact sheet PNG to write [default: VIDEO with -check.png].")
@click.option("--expect", type=int, help="Openings the installer made: exit status 1 when the count differs.")
@click.option("--fps", type=float, help="Frame rate, when the file does not say.")
def check_door(video: Path, roi: tuple[int, int, int, int] | None, config_path: Path | None, teach_path: Path | None,
               sheet: Path | None, expect: int | None, fps: float | None) -> None:
    """Field acceptance check of a new door: record a minute while opening and closing it N times.

    Replays VIDEO through the detector as the edge box would (first frame = the closed door), prints
    each opening with its start, when it was confirmed and when it closed, any camera tampering, and
    writes a contact sheet: per opening, the door 1 s before, at the start, at confirmation, 1 s later
    and when closed, the ROI drawn red while the door reads open.
    """
    settings = DetectorSettings()
    teach = None
    if config_path is not None:
        try:
            config = load_camera_config(config_path)
        except CameraConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        settings, roi, teach = config.settings(), roi or config.roi, _load_teach(config.teach)
    if teach_path is not None:
        teach = _load_teach(teach_path)
    if roi is None:
        raise click.UsageError("give --roi X,Y,W,H or --config with a [camera] section")
    try:
        info = probe(video, fps)
    except VideoError as exc:
        raise click.ClickException(str(exc)) from exc
    sheet = sheet or video.with_name(f"{video.stem}-check.png")
    watcher = DoorWatcher(roi, settings, teach=teach)
    contact: ContactSheet | None = None
    lines: list[str] = []
    open_line: int | None = None  # the line of the opening not yet closed
    frame_count = 0
    for index, frame in enumerate(video_frames(video)):
        frame_count = index + 1
        t_s = index / info.fps
        try:
            events = watcher.process(frame, t_s)
        except FrameError as exc:
            raise click.ClickException(str(exc)) from exc
        if contact is None:
            contact = ContactSheet(roi, (frame.shape[1], frame.shape[0]), info.fps)
        contact.frame(frame, t_s, watcher.open_since is not None)
        for event in events:
            if isinstance(event, DoorOpened):
                contact.opened(event.t_s, t_s)
                open_line = len(lines)
                lines.append(f"opening {len(contact.rows)}: start {event.t_s:.2f} s, confirmed {t_s:.2f} s "
                             f"(+{t_s - event.t_s:.2f} s)")
            elif isinstance(event, DoorClosed):
                contact.closed(event.t_s)
                if open_line is not None:
                    lines[open_line] += f", closed {event.t_s:.2f} s" + (", exit suspected" if event.exit_suspected else "")
                    open_line = None
            elif isinstance(event, TamperStarted):
                lines.append(f"camera tamper {event.reason} from {event.t_s:.2f} s")
            elif isinstance(event, TamperEnded):
                lines.append(f"camera tamper {event.reason} ended {event.t_s:.2f} s")
    if contact is None:
        raise click.ClickException(f"no frames in {video}")
    contact.save(sheet)
    seen = len(contact.rows)
    for line in lines:
        click.echo(line)
    click.echo(f"{seen} opening(s) in {frame_count / info.fps:.1f} s; contact sheet {sheet}"
               + ("" if teach is None else " (taught door)"))
    if expect is not None:
        if seen != expect:
            click.echo(f"FAIL: saw {seen} opening(s), expected {expect}: look at the contact sheet, redraw the ROI or "
                       "teach the door (`isowatch calibrate --teach`)")
            sys.exit(1)
        click.echo(f"PASS: all {expect} opening(s) seen")
