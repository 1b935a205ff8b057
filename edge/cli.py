"""`isowatch detect` and `isowatch calibrate`: replay footage through the detector, save a camera's reference (issue 3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import cv2

from edge.camera_config import CameraConfig, DetectorSettings
from edge.camera_toml import CameraConfigError, load_camera_config, save_camera_config
from edge.door_watch import FrameError
from edge.replay import DoorInterval, Interval, VideoError, probe, replay


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
    --use-reference is given. Installers tune a camera by replaying its footage here.
    """
    settings: DetectorSettings = DetectorSettings()
    reference = None
    if config_path is not None:
        try:
            config = load_camera_config(config_path)
        except CameraConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        settings = config.settings()
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
            for interval in replay(video, roi, settings, fps=fps, reference=reference):
                click.echo(json.dumps(interval.as_json()))
            return
        rows = []
        with click.progressbar(length=info.frames or 1, label=f"{video.name} @ {info.fps:g} fps", file=sys.stderr) as bar:
            for interval in replay(video, roi, settings, fps=fps, reference=reference, on_frame=lambda _: bar.update(1)):
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


@click.command()
@click.option("--source", required=True, help="Video file or camera device (0, /dev/video0) showing the door closed.")
@click.option("--roi", required=True, callback=_roi_option, help="Door region X,Y,W,H in pixels.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("edge.toml"),
              show_default=True, help="Edge TOML to write the [camera] section into (created if missing).")
@click.option("--at", "at_s", type=float, default=0.0, show_default=True, help="Seconds into a video file to take the frame from.")
def calibrate(source: str, roi: tuple[int, int, int, int], config_path: Path, at_s: float) -> None:
    """Save a reference frame of the closed door and the door ROI to the edge config.

    Writes REFERENCE as <config>-reference.png beside the config and a [camera] section with the ROI
    and the detector's default knobs; other sections of the file are kept as they are.
    """
    frame, _ = grab_frame(source, at_s)
    height, width = frame.shape[:2]
    x, y, w, h = roi
    if x + w > width or y + h > height:
        raise click.ClickException(f"roi {x},{y},{w},{h} lies outside the {width}x{height} frame")
    reference = config_path.with_name(f"{config_path.stem}-reference.png")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(reference), frame):
        raise click.ClickException(f"cannot write {reference}")
    previous = {}
    if config_path.exists():
        try:
            previous = load_camera_config(config_path).model_dump(exclude={"roi", "reference_frame", "source"})
        except CameraConfigError:
            previous = {}  # no or broken [camera] section: start from defaults
    config = CameraConfig(**previous, roi=roi, reference_frame=Path(reference.name), source=source)
    try:
        save_camera_config(config_path, config)
    except CameraConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"saved {reference} ({width}x{height}) and [camera] roi={x},{y},{w},{h} in {config_path}")
