"""Door detector accuracy per class of door clip: recall, false openings, start and confirmation delay (issue 17).

    .venv/bin/python bench/accuracy.py [--seeds 3] [--first-seed 100] [--seconds 12] [--only slow --only glass]

Each class of `edge.scenes.DOOR_CLASSES` (slow, fast, glass, toward a close camera, portrait, exposure
pumping, low bitrate, someone waiting at the door, ...) is generated at `--seeds` seeds from
`--first-seed` on, rotating through three camera sizes and frame rates, and fed frame by frame to
`DoorWatcher` as the edge agent does. Per class: true openings, recall (start within 1.5 s of the
label, as the shared clips are scored), on time (start within 0.5 s of the first frame the leaf moves
AND reported within 1 s of the leaf turning enough to show a gap), false openings, and the medians of
start delay (reported start - leaf moves) and confirmation delay (report frame - gap shows).

Tuning uses seeds 100-199 only; tests/edge/test_door_classes.py holds seeds and class combinations
that tuning never sees.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402

from edge.door_watch import DoorOpened, DoorWatcher  # noqa: E402
from edge.scenes import DOOR_CLASSES, DoorClass, generate_clip  # noqa: E402
from edge.scoring import OpeningTiming, match_openings  # noqa: E402

CAMERAS = [(640, 480, 10.0), (480, 360, 15.0), (800, 450, 12.0)]


def run_clip(door_class: DoorClass, seed: int, camera: tuple[int, int, float], seconds: float, folder: str,
             teach: Any = None) -> tuple[list[OpeningTiming], int]:
    """Generate one clip, replay it live through DoorWatcher; the true openings' timings and false openings."""
    width, height = door_class.size(camera[0], camera[1])
    fps = camera[2]
    path = Path(folder) / f"{door_class.scenario}_{seed}_{width}x{height}.mp4"
    labels = generate_clip(path, door_class.scenario, seed=seed, width=width, height=height, fps=fps,
                           seconds=seconds, variant=door_class.variant)
    return replay_live(path, tuple(labels["roi"]), fps, labels["door_open"], teach=teach)


def replay_live(path: Path, roi: tuple[int, int, int, int], fps: float, truths: list[dict[str, Any]],
                teach: Any = None) -> tuple[list[OpeningTiming], int]:
    watcher = DoorWatcher(roi, teach=teach) if teach is not None else DoorWatcher(roi)
    capture = cv2.VideoCapture(str(path))
    reported: list[tuple[float, float]] = []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        t_s = index / fps
        for event in watcher.process(frame, t_s):
            if isinstance(event, DoorOpened):
                reported.append((event.t_s, t_s))
        index += 1
    capture.release()
    return match_openings(reported, truths)


def _job(job: tuple[str, int, int, float, str]) -> tuple[str, list[OpeningTiming], int]:
    name, seed, camera_index, seconds, folder = job
    timings, false = run_clip(DOOR_CLASSES[name], seed, CAMERAS[camera_index % len(CAMERAS)], seconds, folder)
    return name, timings, false


def summarise(timings: list[OpeningTiming], false: int) -> dict[str, Any]:
    found = [t for t in timings if t.found]
    starts = [t.start_delay_s for t in found if t.start_delay_s is not None]
    confirms = [t.confirm_delay_s for t in found if t.confirm_delay_s is not None]
    return {
        "openings": len(timings),
        "recall": len(found) / len(timings) if timings else None,
        "on_time": sum(t.on_time for t in timings) / len(timings) if timings else None,
        "false": false,
        "start_delay": statistics.median(starts) if starts else None,
        "confirm_delay": statistics.median(confirms) if confirms else None,
    }


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--only", action="append", choices=sorted(DOOR_CLASSES), help="classes to run (default all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = args.only or list(DOOR_CLASSES)
    with tempfile.TemporaryDirectory() as folder:
        jobs = [(name, args.first_seed + i, i, args.seconds, folder) for name in names for i in range(args.seeds)]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(_job, jobs))
    print(f"| class | openings | recall | on time | false | start delay s | confirm delay s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    every: list[OpeningTiming] = []
    every_false = 0
    for name in names:
        timings = [t for n, ts, _ in results if n == name for t in ts]
        false = sum(f for n, _, f in results if n == name)
        every += timings
        every_false += false
        s = summarise(timings, false)
        print(f"| {name} | {s['openings']} | {_cell(s['recall'], '.0%')} | {_cell(s['on_time'], '.0%')} | {s['false']} "
              f"| {_cell(s['start_delay'], '+.2f')} | {_cell(s['confirm_delay'], '+.2f')} |")
    s = summarise(every, every_false)
    print(f"| all | {s['openings']} | {_cell(s['recall'], '.0%')} | {_cell(s['on_time'], '.0%')} | {s['false']} "
          f"| {_cell(s['start_delay'], '+.2f')} | {_cell(s['confirm_delay'], '+.2f')} |")


if __name__ == "__main__":
    main()
