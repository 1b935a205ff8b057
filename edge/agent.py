"""The edge agent: camera pipeline, sensor inputs, heartbeat and remote config, all recording into the
outbox, which the courier drains to the gateway."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
from pydantic import ValidationError

from edge.camera_config import CameraConfig
from edge.capture import FrameSource
from edge.config import EdgeConfig, format_errors
from edge.courier import Courier
from edge.door_watch import DetectorEvent, DoorClosed, DoorOpened, DoorWatcher, FrameError, TamperEnded, TamperStarted
from edge.outbox import Outbox
from edge.recorder import Recorder
from edge.snapshots import Snapshot
from edge.uplink import STATUS_SEQ, DeviceIdentity, Uplink
from firmware_bridge.sensors import workers as sensor_workers
from isowatch.clock import Clock, SystemClock
from isowatch.contract import DeviceConfig, DoorEvent, Heartbeat, SnapshotMeta, TamperEvent
from isowatch.log_limit import RateLimitedLog
from isowatch.stamper import Stamper

log = logging.getLogger(__name__)


def cpu_temperature() -> float | None:
    """Board temperature where Linux exposes it (Raspberry Pi and most SBCs)."""
    try:
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000
    except (OSError, ValueError):
        return None


class CameraPipeline:
    """Frames -> DoorWatcher -> door and tamper events (with snapshots) into the recorder."""

    def __init__(self, source: FrameSource, camera: CameraConfig, recorder: Recorder, clock: Clock) -> None:
        self.source = source
        self.camera = camera
        self.recorder = recorder
        self.clock = clock
        self.frames = 0
        self.health = "ok"
        self._pending_camera: CameraConfig | None = None
        self._lock = threading.Lock()  # the frame loop and the watchdog share the DoorWatcher
        self._refused = RateLimitedLog(log, every_s=60.0)
        self._last_t = 0.0
        self._last_mono = time.monotonic()
        self._startup_silence: float | None = None
        self.footage_ended = False
        self.on_health_change: Callable[[], object] = lambda: None  # the agent republishes its status
        self._open_event: DoorEvent | None = None
        self._tamper_events: dict[str, TamperEvent] = {}
        self.watcher = self._watcher(camera)

    @staticmethod
    def _watcher(camera: CameraConfig) -> DoorWatcher:
        reference = None
        if camera.reference_frame is not None and camera.reference_frame.exists():
            reference = cv2.imread(str(camera.reference_frame))
        try:
            teach = camera.taught_door()
        except (OSError, KeyError, ValueError) as exc:  # the camera still works with the generic detector
            log.warning("taught door %s unreadable, using the generic detector: %s", camera.teach, exc)
            teach = None
        return DoorWatcher(camera.roi, camera.settings(), reference, teach=teach)

    def reconfigure(self, camera: CameraConfig) -> None:
        """Swap in new camera settings at the next frame (called from the network thread)."""
        self._pending_camera = camera

    def run(self, stop: threading.Event) -> None:
        for tick in self.source.ticks(stop):
            with self._lock:
                if self._pending_camera is not None:
                    self.camera, self._pending_camera = self._pending_camera, None
                    self.watcher = self._watcher(self.camera)
                    log.info("camera reconfigured roi=%s", self.camera.roi)
                if self._startup_silence is not None:  # the first frame after a camera that never came up
                    self._record(TamperEnded(tick.t_s, "no_signal", self._startup_silence), tick.t_s)
                    self._startup_silence = None
                self.frames += 1
                self._last_t, self._last_mono = tick.t_s, time.monotonic()
                try:
                    events = self.watcher.process(tick.frame, tick.t_s)
                except FrameError as exc:
                    self._refused.log(logging.ERROR, f"camera frame refused: {exc}")  # a broken camera: every frame
                    self.health = "absent"
                    continue
                for event in events:
                    self._record(event, tick.t_s)
                self._update_health()
        self.footage_ended = True  # a file without loop has ended: silence from here on is not tampering
        log.info("camera pipeline stopped frames=%d", self.frames)

    def watchdog(self, stop: threading.Event) -> None:
        """No frame for `no_signal_after_s`: report `no_signal`, even when a stream hangs inside read()."""
        while not stop.wait(1.0) and not self.footage_ended:
            with self._lock:
                silent = time.monotonic() - self._last_mono
                if silent < self.camera.no_signal_after_s:
                    continue
                now_t = self._last_t + silent
                if self.frames == 0:
                    # The DoorWatcher has seen no frame to date from; report the camera that never came up.
                    if self._startup_silence is None:
                        self._startup_silence = 0.0
                        self._record(TamperStarted(0.0, "no_signal"), now_t)
                else:
                    for event in self.watcher.no_frames(now_t):
                        self._record(event, now_t)
                self._update_health()

    def _update_health(self) -> None:
        tampers = self.watcher.active_tampers
        before = self.health
        if "no_signal" in tampers or self._startup_silence is not None:
            self.health = "no_signal"
        else:
            self.health = "tampered" if tampers else "ok"
        if self.health != before:
            self.on_health_change()

    def _when(self, event_t: float, now_t: float) -> datetime:
        return self.clock.now() - timedelta(seconds=max(0.0, now_t - event_t))

    def _meta(self, snapshot: Snapshot, now_t: float) -> SnapshotMeta:
        import hashlib

        return SnapshotMeta(role=snapshot.role, sha256=hashlib.sha256(snapshot.jpeg).hexdigest(),
                            bytes=len(snapshot.jpeg), width=snapshot.width, height=snapshot.height,
                            taken_at=self._when(snapshot.t_s, now_t))

    def _record(self, event: DetectorEvent, now_t: float) -> None:
        rec = self.recorder
        if isinstance(event, DoorOpened):
            message = rec.send(rec.stamp(DoorEvent, type="door", state="open", at=self._when(event.t_s, now_t),
                                         snapshots=[self._meta(event.snapshot, now_t)]))
            rec.outbox.add_snapshot(message.id, event.snapshot.jpeg)
            self._open_event = message
        elif isinstance(event, DoorClosed):
            snaps = [event.widest] if event.widest else []
            message = rec.send(rec.stamp(
                DoorEvent, type="door", state="closed", at=self._when(event.t_s, now_t),
                opening_id=self._open_event.id if self._open_event else None,
                duration_s=round(event.duration_s, 2), exit_suspected=event.exit_suspected,
                snapshots=[self._meta(s, now_t) for s in snaps],
            ))
            for snap in snaps:
                rec.outbox.add_snapshot(message.id, snap.jpeg)
            self._open_event = None
        elif isinstance(event, TamperStarted):
            self._tamper_events[event.reason] = rec.send(rec.stamp(
                TamperEvent, type="tamper", reason=event.reason, state="start", at=self._when(event.t_s, now_t)))
        elif isinstance(event, TamperEnded):
            started = self._tamper_events.pop(event.reason, None)
            rec.send(rec.stamp(TamperEvent, type="tamper", reason=event.reason, state="end",
                               tamper_id=started.id if started else None, at=self._when(event.t_s, now_t)))


class EdgeAgent:
    """One process per edge box. `start()` runs everything in threads; `stop()` flushes and goes offline."""

    def __init__(self, config: EdgeConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.started = time.monotonic()
        self.identity = DeviceIdentity(config.device.site, config.device.household, config.device.id)
        self.config_version: str | None = None
        self.config_error: str | None = None
        self.heartbeat_s = config.heartbeat.interval_s
        self.outbox = Outbox(config.outbox.path, config.outbox.max_rows, config.outbox.max_mb * 1024 * 1024)
        stamper = Stamper(self.identity.device, self.clock)
        self.uplink = Uplink(config.broker_url(), self.identity, stamper=stamper, on_config=self.on_config,
                             status_fields=self._status_fields, reconnect_max_s=config.uplink.reconnect_max_s)
        self.courier = Courier(self.outbox, self.uplink, resend_after_s=config.uplink.resend_after_s)
        self.recorder = Recorder(stamper, self.outbox)
        self.camera: CameraPipeline | None = None
        if config.camera is not None and config.capture is not None:
            source = FrameSource(config.capture.source, loop=config.capture.loop, realtime=config.capture.realtime,
                                 reconnect_max_s=config.capture.reconnect_max_s)
            self.camera = CameraPipeline(source, config.camera, self.recorder, self.clock)
            self.camera.on_health_change = self.uplink.publish_status
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, wait_for_broker: float = 0) -> "EdgeAgent":
        """Start inputs at once: events are recorded to the outbox even while the uplink is down."""
        self.uplink.start(wait=wait_for_broker)
        self.courier.start()
        if self.camera is not None:
            self._spawn("camera", self.camera.run)
            self._spawn("camera-watchdog", self.camera.watchdog)
        for name, run in sensor_workers(list(self.config.sensors)):
            self._spawn(name, lambda stop, run=run: run(self.recorder, stop))
        self._spawn("heartbeat", self._heartbeats)
        return self

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=self._guarded, args=(name, target), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guarded(self, name: str, target: Any) -> None:
        """Restart a crashed input after a pause, rate-limited, rather than run on without it."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                target(self._stop)
                return
            except Exception:
                log.exception("edge worker %s crashed; restarting in %.0f s", name, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 60.0)

    def stop(self, flush_timeout: float = 5.0) -> None:
        """SIGTERM path: stop inputs, give the gateway a moment to acknowledge, publish offline, close."""
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.courier.stop(flush_timeout=flush_timeout)
        self.uplink.stop()
        self.outbox.close()

    def wait(self) -> None:
        """Block until a video file without loop ends (or stop() is called)."""
        for thread in self._threads:
            if thread.name == "camera":
                thread.join()

    # -- inputs -----------------------------------------------------------------------------------

    def _heartbeats(self, stop: threading.Event) -> None:
        frames_before, t_before = 0, time.monotonic()
        while True:
            now = time.monotonic()
            frames = self.camera.frames if self.camera else 0
            fps = (frames - frames_before) / (now - t_before) if self.camera and now > t_before else None
            frames_before, t_before = frames, now
            beat = self.recorder.send(self.recorder.stamp(
                Heartbeat, type="heartbeat", uptime_s=round(now - self.started, 1),
                outbox_depth=self.outbox.depth(), outbox_dropped=self.outbox.dropped(),
                fps=round(fps, 2) if fps is not None else None, cpu_temp_c=cpu_temperature(),
                config_version=self.config_version, flags=self.outbox.health_flags(),
            ))
            if self.outbox.write_failing:
                # The outbox could not keep it (full disk): its number stays a counted gap, and a copy
                # outside the numbered stream (seq 0, like status) goes out live so the gateway learns now.
                self.uplink.send(beat.model_copy(update={
                    "seq": STATUS_SEQ, "outbox_dropped": self.outbox.dropped(), "flags": self.outbox.health_flags()}))
            if stop.wait(self.heartbeat_s):
                return

    # -- status and remote config -----------------------------------------------------------------

    def _status_fields(self) -> dict[str, Any]:
        camera = None if self.camera is None else self.camera.health
        return {"config_version": self.config_version, "config_error": self.config_error, "camera": camera}

    def on_config(self, payload: bytes) -> None:
        """A retained config from the gateway: validate all of it, apply it all, or keep the running one."""
        try:
            pushed = DeviceConfig.model_validate_json(payload)
            if pushed.device != self.identity.device:
                raise ValueError(f"config is for device {pushed.device}")
            camera = self._merged_camera(pushed)
        except ValidationError as exc:
            self._refuse_config(format_errors(exc).strip())
            return
        except ValueError as exc:
            self._refuse_config(str(exc))
            return
        if camera is not None and self.camera is not None:
            self.camera.reconfigure(camera)
        self.heartbeat_s = pushed.heartbeat_s
        self.config_version, self.config_error = pushed.version, None
        log.info("config applied version=%s", pushed.version)
        self.uplink.publish_status()

    def _merged_camera(self, pushed: DeviceConfig) -> CameraConfig | None:
        if not pushed.camera:
            return None
        if self.camera is None:
            raise ValueError("config has [camera] settings but this box has no camera")
        return CameraConfig.model_validate({**self.camera.camera.model_dump(), **pushed.camera})

    def _refuse_config(self, reason: str) -> None:
        self.config_error = reason[:500]
        log.warning("config refused, keeping version=%s reason=%s", self.config_version, reason)
        self.uplink.publish_status()
