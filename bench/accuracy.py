"""Door detector accuracy per class of door clip: recall, false openings, start and confirmation delay.

    .venv/bin/python bench/accuracy.py [--seeds 3] [--first-seed 100] [--seconds 12] [--only slow --only glass]

Each class of `edge.scenes.DOOR_CLASSES` (slow, fast, glass, toward a close camera, portrait, exposure
pumping, low bitrate, someone waiting at the door, ...) is generated at `--seeds` seeds from
`--first-seed` on, rotating through three camera sizes and frame rates, and fed frame by frame to
`DoorWatcher` as the edge agent does. Per class: true openings, recall (start within 1.5 s of the
label, as the shared clips are scored), on time (start within 0.5 s of the first frame the leaf moves
AND reported within 1 s of the leaf turning enough to show a gap), false openings, and the medians of
start delay (reported start - leaf moves) and confirmation delay (report frame - gap shows).

With --teach, each clip's door (the same look, drawn from a door seed) is first taught from a clip
of it opening and closing once (`edge.door_teach`), and the class's clip is replayed both without
and with the taught door; a refused teach counts as no teach (its reason is printed).

Tuning uses seeds 100-199 only; tests/edge/test_door_classes.py holds seeds and class combinations
that tuning never sees.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from edge.door_watch import DoorOpened, DoorWatcher
from edge.replay import video_frames
from edge.scenes import DOOR_CLASSES, DoorClass, generate_clip
from edge.scoring import OpeningTiming, match_openings

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
    reported: list[tuple[float, float]] = []
    for index, frame in enumerate(video_frames(path)):
        t_s = index / fps
        for event in watcher.process(frame, t_s):
            if isinstance(event, DoorOpened):
                reported.append((event.t_s, t_s))
    return match_openings(reported, truths)


def taught_for(door_class: DoorClass, camera: tuple[int, int, float], folder: str) -> tuple[Any, str]:
    """Teach the class's door (its variant must name a door_seed) from one opening; (model or None, note)."""
    from edge.door_teach import TeachRefused, teach_door

    width, height = door_class.size(camera[0], camera[1])
    path = Path(folder) / f"teach_{door_class.variant.door_seed}_{width}x{height}.mp4"
    labels = generate_clip(path, "full_open", seed=(door_class.variant.door_seed or 0) + 5000, width=width,
                           height=height, fps=camera[2], seconds=10.0, variant=door_class.variant)
    clip = list(video_frames(path))
    try:
        return teach_door(clip, tuple(labels["roi"]), clip[0]), ""
    except TeachRefused as exc:
        return None, str(exc)


def _job(job: tuple[str, int, int, float, str, bool]) -> tuple[str, list[OpeningTiming], int, list[OpeningTiming], int, str]:
    name, seed, camera_index, seconds, folder, teach = job
    camera = CAMERAS[camera_index % len(CAMERAS)]
    door_class = DOOR_CLASSES[name]
    if not teach:
        timings, false = run_clip(door_class, seed, camera, seconds, folder)
        return name, timings, false, [], 0, ""
    door_class = dataclasses.replace(door_class, variant=dataclasses.replace(door_class.variant, door_seed=seed))
    taught, note = taught_for(door_class, camera, folder)
    timings, false = run_clip(door_class, seed, camera, seconds, folder)
    if taught is None:
        return name, timings, false, timings, false, note
    taught_timings, taught_false = run_clip(door_class, seed, camera, seconds, folder, teach=taught)
    return name, timings, false, taught_timings, taught_false, note


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


def print_table(names: list[str], results: list[tuple[str, list[OpeningTiming], int]]) -> None:
    print("| class | openings | recall | on time | false | start delay s | confirm delay s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    every: list[OpeningTiming] = []
    every_false = 0
    for name in [*names, "all"]:
        if name == "all":
            timings, false = every, every_false
        else:
            timings = [t for n, ts, _ in results if n == name for t in ts]
            false = sum(f for n, _, f in results if n == name)
            every += timings
            every_false += false
        s = summarise(timings, false)
        print(f"| {name} | {s['openings']} | {_cell(s['recall'], '.0%')} | {_cell(s['on_time'], '.0%')} | {s['false']} "
              f"| {_cell(s['start_delay'], '+.2f')} | {_cell(s['confirm_delay'], '+.2f')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--only", action="append", choices=sorted(DOOR_CLASSES), help="classes to run (default all)")
    parser.add_argument("--teach", action="store_true", help="also teach each door first and replay with the taught door")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = args.only or list(DOOR_CLASSES)
    with tempfile.TemporaryDirectory() as folder:
        jobs = [(name, args.first_seed + i, i, args.seconds, folder, args.teach) for name in names for i in range(args.seeds)]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(_job, jobs))
    if args.teach:
        print("generic detector, the same doors:")
    print_table(names, [(n, ts, f) for n, ts, f, *_ in results])
    if args.teach:
        print("\nwith the taught door:")
        print_table(names, [(n, ts, f) for n, _, _, ts, f, _ in results])
        for n, *_, note in results:
            if note:
                print(f"teach refused for {n}: {note}")


if __name__ == "__main__":
    main()
