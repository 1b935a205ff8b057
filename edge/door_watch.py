"""`DoorWatcher`: one camera's door detector, tamper detector, exit tracker and snapshots behind one call.

Feed it frames with their time; it returns typed events. It never opens a camera, so the edge agent,
the replay CLI and the tests drive it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.camera_config import DetectorSettings
from edge.door_detector import DoorDetector, DoorState
from edge.door_features import Levels, levels_of
from edge.door_teach import TaughtDoor
from edge.exit_tracker import ExitTracker
from edge.snapshots import Snapshot, WidestFrame, encode_snapshot
from edge.tamper import TamperDetector, TamperReason, view_of, view_size

# The detector works on small crops and views: OpenCV's thread pool costs more CPU on them than it
# saves (measured 660 -> 900 frames per CPU-second at 640x480 with one thread), and an edge box's
# other core is better left to the uplink and sensors.
cv2.setNumThreads(1)


class FrameError(ValueError):
    """A frame of the wrong shape or size for this watcher."""


@dataclass(frozen=True, slots=True)
class DoorOpened:
    t_s: float  # when the leaf began to show open, backdated from the confirmation
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class DoorClosed:
    t_s: float
    opened_s: float
    duration_s: float
    exit_suspected: bool
    widest: Snapshot | None


@dataclass(frozen=True, slots=True)
class TamperStarted:
    t_s: float
    reason: TamperReason


@dataclass(frozen=True, slots=True)
class TamperEnded:
    t_s: float
    reason: TamperReason
    started_s: float


DetectorEvent = DoorOpened | DoorClosed | TamperStarted | TamperEnded


class DoorWatcher:
    """Per-frame door and tamper detection for one fixed camera."""

    def __init__(
        self,
        roi: tuple[int, int, int, int],
        settings: DetectorSettings | None = None,
        reference: np.ndarray | None = None,
        *,
        change_gate: bool = True,
        teach: TaughtDoor | None = None,
    ) -> None:
        """`change_gate=False` gives every frame the door detector's full analysis (see `ChangeGate`);
        `teach` is this door's taught open appearance from `isowatch calibrate --teach`."""
        self._teach = teach
        self.roi = roi
        self.settings = settings or DetectorSettings()
        self._reference = reference  # a calibrated closed-door frame; else the first frame is taken as closed
        self._frame_size: tuple[int, int] | None = None
        self._door: DoorDetector | None = None
        self._tamper: TamperDetector | None = None
        self._exit: ExitTracker | None = None
        self._widest = WidestFrame()
        self._opened_s: float | None = None
        self._tamper_since: dict[TamperReason, float] = {}
        self._last_frame_s: float | None = None
        self._change_gate = change_gate

    @property
    def state(self) -> DoorState:
        if self._door is None or self._tamper is None or self._tamper.active or "no_signal" in self._tamper_since:
            return DoorState.UNKNOWN
        return self._door.state

    def process(self, frame: np.ndarray, t_s: float) -> list[DetectorEvent]:
        events: list[DetectorEvent] = []
        if "no_signal" in self._tamper_since:
            events.append(TamperEnded(t_s, "no_signal", self._tamper_since.pop("no_signal")))
        self._last_frame_s = t_s
        door, tamper, exit_tracker = self._parts(frame)
        levels = levels_of(frame)
        # The whole-frame view feeds the tamper checks (5 Hz) and the exit tracker (door open only).
        tamper_due = tamper.due(t_s)
        view = view_of(levels) if tamper_due or door.state is DoorState.OPEN else None
        for change in tamper.update(view, t_s) if view is not None and tamper_due else []:
            if change.started:
                self._tamper_since[change.reason] = change.t_s
                events.append(TamperStarted(change.t_s, change.reason))
            else:
                events.append(TamperEnded(change.t_s, change.reason, self._tamper_since.pop(change.reason, change.t_s)))
        if tamper.active or tamper.pending:
            door.suspend()
        else:
            events.extend(self._door_events(door, exit_tracker, frame, levels, t_s))
        exit_tracker.update(view, door.state is DoorState.OPEN)
        return events

    def no_frames(self, now_s: float) -> list[DetectorEvent]:
        """Watchdog: call when frames stop arriving; reports `no_signal` once, ended by the next frame."""
        if self._last_frame_s is None or "no_signal" in self._tamper_since:
            return []
        if now_s - self._last_frame_s < self.settings.no_signal_after_s:
            return []
        self._tamper_since["no_signal"] = self._last_frame_s
        return [TamperStarted(self._last_frame_s, "no_signal")]

    @property
    def open_since(self) -> float | None:
        return self._opened_s

    @property
    def active_tampers(self) -> dict[TamperReason, float]:
        return dict(self._tamper_since)

    @property
    def analysed_frames(self) -> int:
        """Frames the door detector analysed in full; the change gate reused the reading on the others."""
        return 0 if self._door is None else self._door.analysed_frames

    @property
    def exit_suspected(self) -> bool:
        return self._exit is not None and self._exit.suspected

    def _door_events(
        self, door: DoorDetector, exit_tracker: ExitTracker, frame: np.ndarray, levels: Levels, t_s: float
    ) -> list[DetectorEvent]:
        transition = door.update(levels, t_s)
        reading = door.last_reading
        if door.state is DoorState.OPEN and reading is not None:
            self._widest.offer(frame, reading.changed_area, t_s)
        if transition is None:
            return []
        quality = self.settings.snapshot_quality
        if transition.state is DoorState.OPEN:
            self._opened_s = transition.t_s
            exit_tracker.start_opening()
            return [DoorOpened(transition.t_s, encode_snapshot(frame, "opened", t_s, quality))]
        if transition.state is DoorState.CLOSED and self._opened_s is not None:
            opened, self._opened_s = self._opened_s, None
            return [
                DoorClosed(
                    transition.t_s,
                    opened,
                    max(0.0, transition.t_s - opened),
                    exit_tracker.suspected,
                    self._widest.take(quality),
                )
            ]
        return []

    def _parts(self, frame: np.ndarray) -> tuple[DoorDetector, TamperDetector, ExitTracker]:
        if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
            raise FrameError(f"expected a BGR or grey frame, got shape {frame.shape}")
        size = (frame.shape[1], frame.shape[0])
        if self._frame_size is None:
            self._build(size)
        elif size != self._frame_size:
            raise FrameError(f"frame size changed from {self._frame_size} to {size}")
        assert self._door is not None and self._tamper is not None and self._exit is not None
        return self._door, self._tamper, self._exit

    def _build(self, size: tuple[int, int]) -> None:
        x, y, w, h = self.roi
        if x + w > size[0] or y + h > size[1]:
            raise FrameError(f"roi {self.roi} lies outside the {size[0]}x{size[1]} frame")
        self._frame_size = size
        self._door = DoorDetector(size, self.roi, self.settings, change_gate=self._change_gate, teach=self._teach)
        self._tamper = TamperDetector(size, self.roi, self.settings)
        if self._reference is not None:
            if (self._reference.shape[1], self._reference.shape[0]) != size:
                raise FrameError("reference frame size differs from the camera's frames")
            reference = levels_of(self._reference)
            self._door.set_reference(reference)
            self._tamper.set_reference(view_of(reference))
        view_w, view_h = view_size(size)
        sx, sy = view_w / size[0], view_h / size[1]
        self._exit = ExitTracker((x * sx, y * sy, w * sx, h * sy))
