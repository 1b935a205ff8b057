"""DoorWatcher on synthetic numpy frames: what must be an opening, what must not, tampering, watchdog."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.door_detector import DoorState
from edge.door_watch import DoorClosed, DoorOpened, DoorWatcher, FrameError, TamperEnded, TamperStarted

W, H = 320, 240
ROI = (120, 40, 80, 170)
FPS = 10.0


def corridor(
    *,
    gap: float = 0.0,
    gain: float = 1.0,
    person_x: float | None = None,
    night: bool = False,
    noise: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """A corridor wall with posters, a panelled door (hinge on the left), optionally opened by `gap` (0-1)."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(42)
    wall = cv2.resize(base.normal(0, 12, (12, 16)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    img = np.empty((H, W, 3), np.float32)
    img[:] = (150, 160, 170)
    img += wall[..., None]
    img[215:] = (70, 80, 90)
    for x, y, c in ((20, 30, (40, 120, 200)), (250, 40, (200, 60, 60)), (30, 150, (60, 200, 90)), (260, 150, (90, 60, 160))):
        cv2.rectangle(img, (x, y), (x + 35, y + 40), c, -1)
    x, y, w, h = ROI
    cv2.rectangle(img, (x - 3, y - 3), (x + w + 3, y + h), (60, 60, 60), -1)
    leaf = np.empty((h, w, 3), np.float32)
    leaf[:] = (40, 90, 140)
    cv2.rectangle(leaf, (10, 10), (w - 10, h // 2 - 5), (25, 65, 110), 2)
    cv2.rectangle(leaf, (10, h // 2 + 5), (w - 10, h - 10), (25, 65, 110), 2)
    cv2.circle(leaf, (w - 10, h // 2), 3, (200, 200, 200), -1)
    img[y : y + h, x : x + w] = (20, 20, 25)  # the unlit flat behind the door
    visible = max(1, int(round(w * (1 - gap))))  # the turning leaf, foreshortened toward its hinge
    img[y : y + h, x : x + visible] = cv2.resize(leaf, (visible, h), interpolation=cv2.INTER_AREA)
    if person_x is not None:
        px = int(person_x)
        cv2.rectangle(img, (px - 14, 75), (px + 14, 160), (80, 160, 80), -1)
        cv2.circle(img, (px, 62), 12, (60, 70, 90), -1)
        cv2.line(img, (px - 7, 160), (px - 9, 232), (30, 30, 60), 6)
        cv2.line(img, (px + 7, 160), (px + 9, 232), (30, 30, 60), 6)
    img *= gain
    if night:
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        grey = 100 + (grey - grey.mean()) * 0.45
        img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    img += rng.normal(0, noise, (H, W, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def run(frames: list[np.ndarray], watcher: DoorWatcher | None = None) -> tuple[DoorWatcher, list]:
    watcher = watcher or DoorWatcher(ROI)
    events = []
    for i, frame in enumerate(frames):
        events.extend((i / FPS, e) for e in watcher.process(frame, i / FPS))
    return watcher, events


def openings(events: list) -> list[DoorOpened]:
    return [e for _, e in events if isinstance(e, DoorOpened)]


def quiet(seconds: float, seed0: int = 0, **kwargs) -> list[np.ndarray]:
    return [corridor(seed=seed0 + i, **kwargs) for i in range(int(seconds * FPS))]


def test_opening_is_reported_promptly_with_snapshots_and_closes_with_duration() -> None:
    gaps = [0.0] * 20 + [0.1, 0.25, 0.4] + [0.5] * 30 + [0.3, 0.1] + [0.0] * 20
    watcher, events = run([corridor(gap=g, seed=i) for i, g in enumerate(gaps)])
    opened = openings(events)
    assert len(opened) == 1
    reported_at, event = next((t, e) for t, e in events if isinstance(e, DoorOpened))
    assert abs(event.t_s - 2.0) <= 0.3  # the gap first shows at frame 20
    assert reported_at - 2.0 <= 0.5  # the promptness target at 10 fps
    assert event.snapshot.role == "opened" and event.snapshot.jpeg[:2] == b"\xff\xd8"
    closed = [e for _, e in events if isinstance(e, DoorClosed)]
    assert len(closed) == 1 and 4.5 <= closed[0].t_s <= 5.8
    assert closed[0].duration_s == pytest.approx(closed[0].t_s - event.t_s)
    assert closed[0].widest is not None and closed[0].widest.role == "widest"
    assert not closed[0].exit_suspected
    assert watcher.state is DoorState.CLOSED


def test_door_left_open_stays_open_however_long_it_is_still() -> None:
    # Motion detectors fold a still scene into their background within seconds; the closed-door
    # signature must not.
    frames = quiet(1) + [corridor(gap=0.45, seed=i) for i in range(600)]
    watcher, events = run(frames)
    assert len(openings(events)) == 1
    assert not [e for _, e in events if isinstance(e, DoorClosed)]
    assert watcher.state is DoorState.OPEN


def test_change_gate_skips_a_calm_door_yet_sees_a_slow_narrow_opening_as_soon_as_full_analysis() -> None:
    # The gate reuses the last analysis while the door's thumbnail stays within noise; a leaf that
    # turns slowly must start analysis on the frames it shows, not at the next forced one.
    gaps = [0.0] * 50 + list(np.linspace(0.02, 0.3, 15)) + [0.3] * 20
    frames = [corridor(gap=float(g), seed=i) for i, g in enumerate(gaps)]
    gated, gated_events = run(frames)
    ungated, ungated_events = run(frames, DoorWatcher(ROI, change_gate=False))
    assert len(openings(gated_events)) == 1
    assert [e.t_s for e in openings(gated_events)] == [e.t_s for e in openings(ungated_events)]
    assert gated.analysed_frames < 0.6 * len(frames)
    assert ungated.analysed_frames == len(frames) - 1  # the first frame is the closed reference


def test_change_gate_still_analyses_an_unchanging_view_twice_a_second() -> None:
    watcher, _ = run([corridor(seed=0)] * 51)
    assert watcher.analysed_frames == 10  # at 0.1 s, 0.6 s, ..., 4.6 s


def test_lights_switching_with_flicker_and_back_is_not_an_opening() -> None:
    gains = [1.0] * 15 + [0.35, 1.0, 0.4, 0.9, 0.35, 1.0, 0.5] + [0.35] * 40 + [1.0, 0.4, 1.0] + [1.0] * 20
    watcher, events = run([corridor(gain=g, seed=i) for i, g in enumerate(gains)])
    assert openings(events) == []
    assert not [e for _, e in events if isinstance(e, TamperStarted)]
    assert watcher.state is DoorState.CLOSED


def test_slow_daylight_drift_is_not_an_opening() -> None:
    gains = np.linspace(1.0, 0.55, 400)
    _, events = run([corridor(gain=float(g), seed=i) for i, g in enumerate(gains)])
    assert openings(events) == []


@pytest.mark.parametrize("speed_px_per_frame", [4, 9, 16])
def test_person_walking_past_in_front_of_the_door_is_not_an_opening(speed_px_per_frame: int) -> None:
    xs = list(range(-30, W + 30, speed_px_per_frame))
    frames = quiet(1) + [corridor(person_x=x, seed=i) for i, x in enumerate(xs)] + quiet(1, seed0=500)
    watcher, events = run(frames)
    assert openings(events) == []
    assert watcher.state is DoorState.CLOSED


def test_night_infrared_noise_is_not_an_opening_but_an_opening_at_night_is() -> None:
    _, events = run(quiet(15, night=True, noise=10.0))
    assert openings(events) == []
    gaps = [0.0] * 20 + [0.2, 0.4, 0.6] + [0.7] * 30 + [0.0] * 20
    _, events = run([corridor(gap=g, night=True, noise=10.0, seed=i) for i, g in enumerate(gaps)])
    assert len(openings(events)) == 1


def test_covered_lens_is_tamper_and_door_state_unknown_meanwhile() -> None:
    rng = np.random.default_rng(1)
    dark = [np.clip(rng.normal(6, 2, (H, W, 3)), 0, 255).astype(np.uint8) for _ in range(40)]
    watcher = DoorWatcher(ROI)
    _, events = run(quiet(2), watcher)
    assert watcher.state is DoorState.CLOSED
    for i, frame in enumerate(dark):
        events.extend((0, e) for e in watcher.process(frame, 2.0 + i / FPS))
    assert watcher.state is DoorState.UNKNOWN
    for i in range(30):
        events.extend((0, e) for e in watcher.process(corridor(seed=900 + i), 6.0 + i / FPS))
    started = [e for _, e in events if isinstance(e, TamperStarted)]
    ended = [e for _, e in events if isinstance(e, TamperEnded)]
    assert [e.reason for e in started] == ["covered"] and 2.0 <= started[0].t_s <= 3.2
    assert [e.reason for e in ended] == ["covered"] and 6.0 <= ended[0].t_s <= 7.2
    assert openings(events) == []
    assert watcher.state is DoorState.CLOSED


def test_heavy_defocus_is_tamper() -> None:
    frames = quiet(2) + [cv2.GaussianBlur(corridor(seed=100 + i), (0, 0), 4) for i in range(40)] + quiet(3, seed0=300)
    _, events = run(frames)
    assert [e.reason for _, e in events if isinstance(e, TamperStarted)] == ["defocus"]
    assert [e.reason for _, e in events if isinstance(e, TamperEnded)] == ["defocus"]
    assert openings(events) == []


def test_camera_knocked_away_is_moved_tamper_until_the_end() -> None:
    turn = cv2.getRotationMatrix2D((W / 2, H / 2), 9, 1.05)
    turn[:, 2] += (25, 12)
    moved = [cv2.warpAffine(corridor(seed=100 + i), turn, (W, H), borderMode=cv2.BORDER_REFLECT) for i in range(60)]
    watcher, events = run(quiet(2) + moved)
    started = [e for _, e in events if isinstance(e, TamperStarted)]
    assert [e.reason for e in started] == ["moved"] and 1.5 <= started[0].t_s <= 3.0
    assert not [e for _, e in events if isinstance(e, TamperEnded)]
    assert openings(events) == []
    assert watcher.state is DoorState.UNKNOWN


def test_shake_is_not_tamper_nor_an_opening() -> None:
    rng = np.random.default_rng(3)
    shaken = []
    for i in range(20):
        m = np.float32([[1, 0, rng.uniform(-5, 5)], [0, 1, rng.uniform(-5, 5)]])
        shaken.append(cv2.warpAffine(corridor(seed=200 + i), m, (W, H), borderMode=cv2.BORDER_REPLICATE))
    _, events = run(quiet(2) + shaken + quiet(3, seed0=400))
    assert [e for _, e in events if isinstance(e, (TamperStarted, DoorOpened))] == []


def test_no_frames_reports_no_signal_once_and_the_next_frame_ends_it() -> None:
    watcher, _ = run(quiet(1))
    last = 0.9
    assert watcher.no_frames(last + 1.0) == []
    started = watcher.no_frames(last + watcher.settings.no_signal_after_s + 0.1)
    assert [(type(e), e.reason, e.t_s) for e in started] == [(TamperStarted, "no_signal", last)]
    assert watcher.no_frames(last + 60) == []
    assert watcher.state is DoorState.UNKNOWN
    ended = watcher.process(corridor(seed=77), 70.0)
    assert [(type(e), e.reason, e.started_s) for e in ended] == [(TamperEnded, "no_signal", last)]


def test_frames_of_another_size_are_refused() -> None:
    watcher, _ = run(quiet(0.2))
    with pytest.raises(FrameError):
        watcher.process(np.zeros((100, 100, 3), np.uint8), 1.0)
    with pytest.raises(FrameError):
        DoorWatcher((300, 200, 80, 100)).process(corridor(), 0.0)


def test_grey_frames_are_accepted() -> None:
    gaps = [0.0] * 10 + [0.5] * 20
    _, events = run([cv2.cvtColor(corridor(gap=g, seed=i), cv2.COLOR_BGR2GRAY) for i, g in enumerate(gaps)])
    assert len(openings(events)) == 1
