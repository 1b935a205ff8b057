"""Door detector throughput: frames per CPU-second, detector alone and with decode, and peak RSS.

    .venv/bin/python bench/detect.py [--repeats 5] [--seconds 20]

Clips come from edge.scenes (door cycles with passers-by are the busiest case) at 640x480 and
1280x720, plus a shared sample clip when ../shared is present. CPU time is time.process_time, so
the figure is per core and does not depend on how busy the machine is; medians over the repeats.
"ungated" is the detector alone with its change gate off, every frame analysed in full: the worst
case, a view that never settles (night IR noise); "analysed" is the share of frames the gate let
through to the full analysis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge.door_watch import DoorWatcher
from edge.replay import video_frames
from edge.scenes import generate_clip

SHARED_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "door-clips" / "cycles_1001.mp4"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    capture.release()
    return list(video_frames(path)), fps


def detector_only(frames: list[np.ndarray], fps: float, roi: tuple[int, int, int, int], *, change_gate: bool = True) -> tuple[float, float]:
    """Frames per CPU-second and the share of frames analysed in full."""
    watcher = DoorWatcher(roi, change_gate=change_gate)
    start = time.process_time()
    for i, frame in enumerate(frames):
        watcher.process(frame, i / fps)
    return len(frames) / (time.process_time() - start), watcher.analysed_frames / len(frames)


def with_decode(path: Path, roi: tuple[int, int, int, int]) -> float:
    watcher = DoorWatcher(roi)
    start = time.process_time()
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    capture.release()
    count = 0
    for count, frame in enumerate(video_frames(path), start=1):
        watcher.process(frame, (count - 1) / fps)
    return count / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each generated clip")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # per-core figures: the edge box runs one camera per core

    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        for width, height in ((640, 480), (1280, 720)):
            path = Path(tmp) / f"cycles_{width}x{height}.mp4"
            labels = generate_clip(path, "cycles", seed=7, width=width, height=height, fps=10, seconds=args.seconds)
            clips.append((f"scenes cycles {width}x{height}", path, tuple(labels["roi"])))
        if SHARED_CLIP.exists():
            roi = tuple(json.loads(SHARED_CLIP.with_suffix(".json").read_text())["roi"])
            clips.insert(1, ("shared cycles_1001 640x480", SHARED_CLIP, roi))

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average (1 min) at start: {load:.2f} on {os.cpu_count()} CPUs: other work on the box slows the figures")
        print(f"machine: {platform.node()} | {cpu_model()} | {platform.platform()} | python {platform.python_version()} | opencv {cv2.__version__}")
        print(f"{'clip':<30}{'frames':>7}{'detector fps/CPU-s':>20}{'analysed':>10}{'ungated':>9}{'with decode':>13}")
        for name, path, roi in clips:
            frames, fps = decode(path)
            # Gated and ungated runs alternate so that a busy spell on the box hits both alike.
            gated, ungated = [], []
            for _ in range(args.repeats):
                gated.append(detector_only(frames, fps, roi))
                ungated.append(detector_only(frames, fps, roi, change_gate=False)[0])
            alone = statistics.median(rate for rate, _ in gated)
            analysed = gated[0][1]
            decoded = statistics.median(with_decode(path, roi) for _ in range(args.repeats))
            print(f"{name:<30}{len(frames):>7}{alone:>20.0f}{analysed:>10.0%}{statistics.median(ungated):>9.0f}{decoded:>13.0f}")
            del frames
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024:.0f} MiB (includes the decoded frames held for the detector-only runs)")


if __name__ == "__main__":
    main()
