"""Camera to phone: a door starts to open in front of an edge camera -> the page's HTTP request at the receiver.

Everything on the path is the real thing: one edge agent per household (`edge.agent.EdgeAgent`) replays
a generated door clip (`edge.scenes`) in real time through the door detector, records the opening in
its outbox and the courier publishes it; a real Mosquitto; the gateway in its own process (ingest,
rules, escalation, Apprise); a local HTTP receiver standing in for the phone services. Meanwhile
another process publishes `--background-rate` other messages per second (normal body temperatures
from other simulated households, which the rules evaluate and let pass).

Each sample is a fresh isolated household with its own agent and clip, so each opening pages once.
Time starts at the delivery of the clip's first frame in which the leaf has moved (the scene generator
labels it, `moved_s`), and the stages in between are:

- detector: that frame -> the detector has confirmed the opening (the agent records the event);
- outbox: recorded -> written to the outbox (fsync) -> the courier publishes it;
- broker_ingest: published -> the gateway's ingest takes it into a batch (the row's `received_at`);
- rules: taken in -> stored, and the alert worker woken for it, starts the pass that raises the alert
  (`alerts.opened_at` is the pass's start);
- send: that pass evaluates the rules, creates and commits the page and hands it to Apprise -> the
  page's request arrives at the receiver (`send_apprise_ms`: Apprise's own part, request and response).

Every clock is this machine's wall clock. The last line printed is the JSON summary:
{"samples": N, "arrived": N, "p50_ms": .., "p90_ms": .., "p99_ms": .., "stages": {"detector_ms": {...}, ...},
 "p99_samples": [...]}.

    python bench/camera_to_phone.py [--samples 100] [--background-rate 1000] [--interval 1.0] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import door_pages, machine, start_gateway, stop, table
from edge.agent import EdgeAgent
from edge.camera_config import CameraConfig
from edge.capture import FrameSource, Tick
from edge.config import CaptureSection, DeviceSection, EdgeConfig, OutboxSection, UplinkSection
from edge.courier import Courier
from edge.door_watch import DoorOpened, DoorWatcher
from edge.outbox import Outbox, Pending
from edge.recorder import M, Recorder
from edge.replay import video_frames
from edge.scenes import generate_clip
from edge.uplink import Uplink
from gateway.inbox import LocalInbox
from isowatch.broker import BrokerUrl, MosquittoBroker, free_port
from isowatch.contract import DoorEvent, TopicKind
from isowatch.stamper import Stamper
from isowatch_app.simulate import Fleet, WirePublisher, register_fleet

TEAMS = 8  # each team's pages go to a receiver on a loopback host of its own: Apprise's rate limit is per host
BACKGROUND_HOUSEHOLDS = 500
CLIPS = 8  # distinct doors; samples take them in turn (each sample is still its own household and agent)
CLIP_SECONDS = 8.0
SAMPLES_FLEET = functools.partial(Fleet, prefix="cam-")  # households cam-hh-000000..., devices cam-dev-000000...
TARGET_P99_MS = 1500.0
STAGES = ("detector_ms", "outbox_ms", "broker_ingest_ms", "rules_ms", "send_ms")
# Parts of a stage: the outbox's write (its fsync), Apprise's request and response within the send.
DETAILS = (*STAGES, "outbox_write_ms", "send_apprise_ms")


@dataclass(frozen=True)
class Clip:
    path: Path
    roi: tuple[int, int, int, int]
    moved_frame: int  # index of the first frame in which the leaf has moved


@dataclass
class Sample:
    """One opening: its household, agent and the wall times (time.time()) the agent's hooks saw."""

    n: int
    clip: Clip
    site: str
    household: str
    device: str
    agent: EdgeAgent | None = None
    moved_at: float | None = None  # the moved frame handed to the detector
    confirmed_at: float | None = None  # the detector's DoorOpened reached the recorder
    written_at: float | None = None  # the outbox committed it
    published_at: float | None = None  # the courier handed it to the MQTT client
    stages: dict[str, float] = field(default_factory=dict)
    total_ms: float | None = None


class TimedSource(FrameSource):
    """The agent's own file source, noting when each frame is handed to the detector."""

    def __init__(self, clip: Clip, sample: Sample) -> None:
        super().__init__(str(clip.path), loop=False, realtime=True)
        self._sample = sample
        self._moved_frame = clip.moved_frame

    def ticks(self, stop: threading.Event) -> Iterator[Tick]:
        for index, tick in enumerate(super().ticks(stop)):
            if index == self._moved_frame:
                self._sample.moved_at = time.time()
            yield tick


def make_clips(root: Path, count: int, size: tuple[int, int], fps: float) -> list[Clip]:
    """Plain corridor doors that the detector, replayed as fast as it goes, sees open exactly once."""
    clips: list[Clip] = []
    seed = 0
    while len(clips) < count:
        if seed > count * 5:
            raise RuntimeError("the detector saw too few of the generated doors open once")
        path = root / f"door-{seed}.mp4"
        labels = generate_clip(path, "full_open", seed=seed, width=size[0], height=size[1], fps=fps,
                               seconds=CLIP_SECONDS)
        seed += 1
        x, y, w, h = labels["roi"]
        roi = (x, y, w, h)
        watcher = DoorWatcher(roi)
        opened = [e for i, frame in enumerate(video_frames(path)) for e in watcher.process(frame, i / fps)
                  if isinstance(e, DoorOpened)]
        if len(labels["door_open"]) != 1 or len(opened) != 1:
            continue  # not a clean single opening for this detector: the benchmark times openings, not misses
        moved_frame = math.ceil(labels["door_open"][0]["moved_s"] * fps - 1e-6)
        clips.append(Clip(path, roi, moved_frame))
    return clips


def seed_registry(db: Path, samples: list[Sample], inboxes: list[LocalInbox], other: LocalInbox) -> None:
    """The background fleet and one fresh household per sample, all in isolation and registered as a running
    fleet would be (with the reading that was due: a first silence scan must not page them all at once).
    Sample team t pages the receiver on host 127.0.t+1.1."""
    register_fleet(db, Fleet(BACKGROUND_HOUSEHOLDS, prefix="load-"), contacts=(other.url("load"),))
    register_fleet(db, SAMPLES_FLEET(len(samples)), teams=TEAMS,
                   contacts=tuple(box.url(f"team-{t}") for t, box in enumerate(inboxes)))


class TimedRecorder(Recorder):
    """The agent's recorder, noting when the detector's opening reaches it and when the outbox has it."""

    def __init__(self, stamper: Stamper, outbox: Outbox, sample: Sample) -> None:
        super().__init__(stamper, outbox)
        self._sample = sample

    def send(self, message: M) -> M:
        opening = isinstance(message, DoorEvent) and message.state == "open"
        if opening and self._sample.confirmed_at is None:
            self._sample.confirmed_at = time.time()
        stored = super().send(message)
        if opening and self._sample.written_at is None:
            self._sample.written_at = time.time()
        return stored


class TimedCourier(Courier):
    """The agent's courier (it takes the outbox's and the uplink's hooks over), noting when it publishes the opening."""

    def __init__(self, outbox: Outbox, uplink: Uplink, sample: Sample, *, resend_after_s: float) -> None:
        super().__init__(outbox, uplink, resend_after_s=resend_after_s)
        self._sample = sample

    def _publish(self, row: Pending) -> None:
        if row.kind is TopicKind.EVENT and self._sample.published_at is None and b'"state":"open"' in row.payload:
            self._sample.published_at = time.time()
        super()._publish(row)


def make_agent(root: Path, broker: MosquittoBroker, sample: Sample) -> EdgeAgent:
    """The edge agent as deployed, with hooks that note when the opening passes each of its stages."""
    clip = sample.clip
    config = EdgeConfig(
        device=DeviceSection(site=sample.site, household=sample.household, id=sample.device),
        uplink=UplinkSection(broker=str(broker.url(sample.device))),
        outbox=OutboxSection(path=root / sample.device / "outbox.db"),
        camera=CameraConfig(roi=clip.roi),
        capture=CaptureSection(source=str(clip.path), loop=False, realtime=True),
    )
    agent = EdgeAgent(config)
    assert agent.camera is not None
    agent.camera.source = TimedSource(clip, sample)
    agent.recorder = agent.camera.recorder = TimedRecorder(agent.recorder.stamper, agent.outbox, sample)
    agent.courier = TimedCourier(agent.outbox, agent.uplink, sample, resend_after_s=config.uplink.resend_after_s)
    return agent


def background(broker: str, rate: int, stop_at: float, counter: Any) -> None:  # counter: a multiprocessing.Value
    """Normal temperatures from the background fleet, `rate` per second, paced in 10 ms slices."""
    fleet = Fleet(BACKGROUND_HOUSEHOLDS, prefix="load-")
    publisher = WirePublisher(BrokerUrl.parse(broker), "bench-load")
    sent, start = 0, time.monotonic()
    while time.monotonic() < stop_at:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            publisher.publish(*fleet.temperature(sent % BACKGROUND_HOUSEHOLDS))
            sent += 1
        publisher.flush()
        time.sleep(0.01)
    publisher.close()
    counter.value = sent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "p90": round(percentile(values, 90), 1),
            "p99": round(percentile(values, 99), 1)}


def gateway_times(db: Path) -> dict[str, tuple[float, float, float]]:
    """Per household: when ingest took its door opening in (`received_at`), when the pass that raised its
    alert began (`opened_at`), and how long Apprise took over the page (request and response)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT e.household, e.received_at, a.opened_at, min(d.elapsed_ms) FROM events e "
            "JOIN alerts a ON a.first_event_id = e.id AND a.kind = 'door_opened' "
            "JOIN notifications n ON n.alert_id = a.id JOIN delivery_attempts d ON d.notification_id = n.id "
            "WHERE e.type = 'door' AND e.state = 'open' GROUP BY e.household").fetchall()
    finally:
        conn.close()
    return {household: (_timestamp(received), _timestamp(opened), apprise) for household, received, opened, apprise in rows}


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure(samples: list[Sample], arrived_wall: dict[str, float],
            gateway: dict[str, tuple[float, float, float]]) -> None:
    for s in samples:
        at, stored = arrived_wall.get(s.household), gateway.get(s.household)
        moved, confirmed, written, published = s.moved_at, s.confirmed_at, s.written_at, s.published_at
        if at is None or stored is None or moved is None or confirmed is None or written is None or published is None:
            continue
        received, opened, apprise_ms = stored
        s.total_ms = (at - moved) * 1000
        s.stages = {
            "detector_ms": (confirmed - moved) * 1000,
            "outbox_ms": (published - confirmed) * 1000,
            "outbox_write_ms": (written - confirmed) * 1000,
            "broker_ingest_ms": (received - published) * 1000,
            "rules_ms": (opened - received) * 1000,
            "send_ms": (at - opened) * 1000,
            "send_apprise_ms": apprise_ms,
        }


def run(samples_n: int, rate: int, interval: float, size: tuple[int, int], fps: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="isowatch-bench-c2p-") as tmp:
        root = Path(tmp)
        (root / "clips").mkdir()
        clips = make_clips(root / "clips", min(CLIPS, samples_n), size, fps)
        fleet = SAMPLES_FLEET(samples_n)
        samples = [Sample(n, clips[n % len(clips)], fleet.site(n), fleet.household(n), fleet.device(n))
                   for n in range(samples_n)]
        inboxes = [LocalInbox(host=f"127.0.{t + 1}.1").start() for t in range(TEAMS)]
        other = LocalInbox().start()
        broker = MosquittoBroker(root / "broker")
        for sample in samples:  # each device its own broker user (the ACL lets it write only its own topics)
            broker.add_user(sample.device)
        load = broker.add_user("bench-load", full_access=True)
        broker.start()
        db = root / "gw.db"
        seed_registry(db, samples, inboxes, other)
        for sample in samples:
            sample.agent = make_agent(root / "edge", broker, sample)
        gateway = start_gateway(broker.url(), db, "--http-port", str(free_port()))
        duration = samples_n * interval + CLIP_SECONDS + 5
        counter = multiprocessing.Value("q", 0)
        loader = multiprocessing.Process(target=background, args=(str(load), rate, time.monotonic() + duration, counter))
        starters: list[threading.Thread] = []
        try:
            loader.start()
            time.sleep(2.0)  # the background load is flowing before the first agent starts
            began = time.monotonic()
            for sample in samples:
                time.sleep(max(0.0, began + sample.n * interval - time.monotonic()))
                assert sample.agent is not None
                starter = threading.Thread(target=sample.agent.start, kwargs={"wait_for_broker": 30}, daemon=True)
                starter.start()
                starters.append(starter)
            arrived = door_pages(inboxes, r"\((cam-hh-\d+)\)", samples_n, timeout=CLIP_SECONDS + 30)
            loader.join(duration + 30)
        finally:
            stoppers = [threading.Thread(target=s.agent.stop, kwargs={"flush_timeout": 1}, daemon=True)
                        for s in samples if s.agent is not None]
            for thread in stoppers:
                thread.start()
            for thread in stoppers:
                thread.join(30)
            if loader.is_alive():
                loader.kill()
            stop(gateway)
            broker.stop()
            for box in [*inboxes, other]:
                box.stop()
        # The receiver stamps arrivals with perf_counter; the gateway's rows carry wall-clock times.
        offset = time.time() - time.perf_counter()
        measure(samples, {h: t + offset for h, t in arrived.items()}, gateway_times(db))
    return summarise(samples, counter.value / duration, samples_n, interval, size, fps)


def summarise(samples: list[Sample], load_rate: float, samples_n: int, interval: float, size: tuple[int, int],
              fps: float) -> dict:
    done = sorted(((s.total_ms, s) for s in samples if s.total_ms is not None), key=lambda pair: pair[0])
    totals = [total for total, _ in done]
    result: dict = {"samples": samples_n, "arrived": len(done), "missing": samples_n - len(done)}
    if done:
        p99 = percentile(totals, 99)
        result |= {"p50_ms": round(statistics.median(totals), 1), "p90_ms": round(percentile(totals, 90), 1),
                   "p99_ms": round(p99, 1), "max_ms": round(totals[-1], 1),
                   "stages": {name: spread([s.stages[name] for _, s in done]) for name in DETAILS},
                   "p99_samples": [{"household": s.household, "total_ms": round(total, 1),
                                    **{k: round(v, 1) for k, v in s.stages.items()}}
                                   for total, s in done if total >= p99]}
    result |= {"background_rate": round(load_rate), "interval_s": interval, "camera": f"{size[0]}x{size[1]}@{fps:g}",
               "target_p99_ms": TARGET_P99_MS, "machine": machine(),
               "met": bool(done) and result["missing"] == 0 and result["p99_ms"] < TARGET_P99_MS}
    return result


def report(result: dict) -> str:
    lines = [f"machine: {result['machine']}"]
    if result["arrived"]:
        lines.append(table(
            f"door starts to open -> page at the receiver (ms), camera {result['camera']}, "
            f"{result['background_rate']} other msg/s",
            ["samples", "arrived", "p50", "p90", "p99", "max", "target p99"],
            [[result["samples"], result["arrived"], result["p50_ms"], result["p90_ms"], result["p99_ms"],
              result["max_ms"], f"< {TARGET_P99_MS:.0f}: {'met' if result['met'] else 'MISSED'}"]]))
        lines.append(table("where the time goes (ms)", ["stage", "p50", "p90", "p99"],
                           [[name, *result["stages"][name].values()] for name in DETAILS]))
        lines.append(table("the p99 sample(s), stage by stage (ms)", ["household", "total", *STAGES],
                           [[s["household"], s["total_ms"], *(s[name] for name in STAGES)]
                            for s in result["p99_samples"]]))
    if result["missing"]:
        lines.append(f"MISSING: {result['missing']} openings did not page within {CLIP_SECONDS + 30:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="Door openings, each in a fresh household.")
    parser.add_argument("--background-rate", type=int, default=1000, help="Other messages per second meanwhile.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between one agent's start and the next.")
    parser.add_argument("--size", default="640x480", help="Camera frame size, WIDTHxHEIGHT.")
    parser.add_argument("--fps", type=float, default=10.0, help="Camera frame rate.")
    parser.add_argument("--json", type=Path, help="Also write the summary here as JSON.")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = run(args.samples, args.background_rate, args.interval, (width, height), args.fps)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
