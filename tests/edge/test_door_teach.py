"""Per-door teach: a door the generic detector finds hard is found once taught, and a
calibration that cannot tell open from closed is refused with its reason."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bench.accuracy import replay_live
from edge.door_teach import TaughtDoor, TeachRefused, teach_door
from edge.replay import video_frames
from edge.scenes import Variant, generate_clip
from isowatch_app.cli import cli

SIZE = (480, 360)
# Door seeds tuning never used; someone walks through (the real frosted-glass door's case), or the
# door opens and closes on its own. The generic detector misses 9307; it also missed 9300 only while
# its vote lost a frame to float rounding (a 0.3 s run measured 0.29999 s).
GLASS_DOORS = ((9300, "exit"), (9301, "exit"), (9302, "full_open"), (9303, "exit"), (9307, "exit"))


def frames_of(path: Path) -> list[np.ndarray]:
    return list(video_frames(path))


def teach_clip(folder: Path, door: int, variant: Variant) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """The installer's teach: the door closed, opened wide once, closed again."""
    labels = generate_clip(folder / f"teach_{door}.mp4", "full_open", seed=door + 1, width=SIZE[0], height=SIZE[1],
                           fps=10, seconds=10, variant=variant)
    return frames_of(folder / f"teach_{door}.mp4"), tuple(labels["roi"])


@pytest.mark.slow
def test_teach_finds_glass_doors_the_generic_detector_misses(tmp_path: Path) -> None:
    generic_found = generic_on_time = taught_found = taught_on_time = total = 0
    for door, scenario in GLASS_DOORS:
        variant = Variant(leaf="glass", door_seed=door)
        frames, roi = teach_clip(tmp_path, door, variant)
        taught = teach_door(frames, roi, frames[0])
        assert taught.separation > 0.2
        path = tmp_path / f"later_{door}.mp4"  # the same door on another day: other timings
        labels = generate_clip(path, scenario, seed=door + 2, width=SIZE[0], height=SIZE[1], fps=10, seconds=14,
                               variant=variant)
        generic, generic_false = replay_live(path, roi, 10, labels["door_open"])
        with_teach, taught_false = replay_live(path, roi, 10, labels["door_open"], teach=taught)
        assert taught_false == 0 and generic_false == 0
        total += len(labels["door_open"])
        generic_found += sum(t.found for t in generic)
        generic_on_time += sum(t.on_time for t in generic)
        taught_found += sum(t.found for t in with_teach)
        taught_on_time += sum(t.on_time for t in with_teach)
    assert generic_found < total, "the generic detector found every glass opening: this test no longer shows teach's use"
    assert taught_found == total
    assert taught_on_time >= total - 1 and taught_on_time > generic_on_time


def test_teach_model_survives_a_round_trip(tmp_path: Path) -> None:
    door = TaughtDoor(np.arange(12, dtype=np.float32).reshape(3, 4) / 66, 0.4, 0.2, "left", (1, 3), 0.5, 0.7, 0.3)
    door.save(tmp_path / "door-teach.npz")
    back = TaughtDoor.load(tmp_path / "door-teach.npz")
    assert np.array_equal(back.weights, door.weights)
    assert (back.open_level, back.closed_level, back.gap_side, back.columns, back.swing, back.separation, back.min_span) == (
        0.4, 0.2, "left", (1, 3), 0.5, 0.7, 0.3)


@pytest.fixture(scope="module")
def solid_teach(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    return teach_clip(tmp_path_factory.mktemp("teach"), 9310, Variant(door_seed=9310))


def test_a_plain_door_teaches(solid_teach: tuple) -> None:
    frames, roi = solid_teach
    taught = teach_door(frames, roi, frames[0])
    assert taught.separation > 0.2 and taught.open_level > taught.closed_level
    assert taught.gap_side in ("left", "right") and 0 < taught.swing <= 1


def test_too_dark_is_refused(solid_teach: tuple) -> None:
    frames, roi = solid_teach
    dark = [(f * 0.05).astype(np.uint8) for f in frames]
    with pytest.raises(TeachRefused, match="too dark"):
        teach_door(dark, roi, dark[0])


def test_a_covered_lens_is_refused_as_door_not_visible(solid_teach: tuple) -> None:
    frames, roi = solid_teach
    rng = np.random.default_rng(1)
    grey = [np.clip(120 + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8) for f in frames]
    with pytest.raises(TeachRefused, match="door not visible"):
        teach_door(grey, roi, grey[0])


def test_no_opening_is_refused(solid_teach: tuple) -> None:
    frames, roi = solid_teach
    still = frames[:5] * 8  # the door never opens
    with pytest.raises(TeachRefused, match="no opening seen"):
        teach_door(still, roi, still[0])


def test_an_roi_beside_the_door_is_refused_as_missing_the_leaf(solid_teach: tuple) -> None:
    frames, roi = solid_teach
    x, y, w, h = roi
    beside = (x + w + 2, y, w // 2, h) if x + w + 2 + w // 2 <= SIZE[0] else (max(0, x - w // 2 - 2), y, w // 2, h)
    with pytest.raises(TeachRefused, match="ROI misses the leaf|door not visible"):
        teach_door(frames, beside, frames[0])


def test_calibrate_teach_refuses_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dark.mp4"
    labels = generate_clip(path, "full_open", seed=9320, width=320, height=240, fps=10, seconds=8)
    writer = cv2.VideoWriter(str(tmp_path / "darker.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for frame in frames_of(path):
        writer.write((frame * 0.04).astype(np.uint8))
    writer.release()
    roi = ",".join(map(str, labels["roi"]))
    config = tmp_path / "edge.toml"
    result = CliRunner().invoke(cli, ["calibrate", "--source", str(tmp_path / "darker.mp4"), "--roi", roi,
                                      "--config", str(config), "--teach"])
    assert result.exit_code != 0
    assert "calibration refused" in result.output and "too dark" in result.output
    assert not config.exists() and not (tmp_path / "edge-reference.png").exists()


def test_calibrate_teach_writes_the_model_and_detect_uses_it(tmp_path: Path) -> None:
    variant = Variant(leaf="glass", door_seed=9330)
    teach = tmp_path / "teach.mp4"
    labels = generate_clip(teach, "full_open", seed=9331, width=320, height=240, fps=10, seconds=10, variant=variant)
    roi = ",".join(map(str, labels["roi"]))
    config = tmp_path / "edge.toml"
    result = CliRunner().invoke(cli, ["calibrate", "--source", str(teach), "--roi", roi, "--config", str(config), "--teach"])
    assert result.exit_code == 0, result.output
    assert "separation" in result.output and (tmp_path / "edge-teach.npz").exists()
    assert 'teach = "edge-teach.npz"' in config.read_text()
    # Recalibrating without --teach drops the old teach (it belongs to the old reference and ROI).
    again = CliRunner().invoke(cli, ["calibrate", "--source", str(teach), "--roi", roi, "--config", str(config)])
    assert again.exit_code == 0 and "teach =" not in config.read_text()


def test_check_door_reports_openings_and_writes_a_contact_sheet(tmp_path: Path) -> None:
    path = tmp_path / "field.mp4"
    labels = generate_clip(path, "cycles", seed=9340, width=320, height=240, fps=10, seconds=20)
    roi = ",".join(map(str, labels["roi"]))
    count = len(labels["door_open"])
    result = CliRunner().invoke(cli, ["check-door", str(path), "--roi", roi, "--expect", str(count)])
    assert result.exit_code == 0, result.output
    reported = [line for line in result.output.splitlines() if line.startswith("opening ")]
    assert len(reported) == count and f"PASS: all {count}" in result.output
    for line, truth in zip(reported, labels["door_open"]):
        start = float(line.split("start ")[1].split(" s")[0])
        assert abs(start - truth["moved_s"]) <= 0.5 and "closed" in line
    sheet = cv2.imread(str(tmp_path / "field-check.png"))
    assert sheet is not None and sheet.shape[1] == 5 * 200  # five frames per opening
    assert sheet.shape[0] > count * 150  # one row of frames per opening
    wrong = CliRunner().invoke(cli, ["check-door", str(path), "--roi", roi, "--expect", str(count + 1),
                                     "--sheet", str(tmp_path / "other.png")])
    assert wrong.exit_code == 1 and "FAIL" in wrong.output and (tmp_path / "other.png").exists()


def test_the_edge_agent_uses_the_taught_door_and_warns_when_it_is_gone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edge.agent import CameraPipeline
    from edge.camera_config import CameraConfig

    door = TaughtDoor(np.ones((3, 4), np.float32) / 12, 0.4, 0.2, "left", (0, 3), 1.0, 0.7)
    door.save(tmp_path / "edge-teach.npz")
    taught = CameraPipeline._watcher(CameraConfig(roi=(10, 10, 40, 80), teach=tmp_path / "edge-teach.npz"))
    assert taught._teach is not None and np.array_equal(taught._teach.weights, door.weights)
    with caplog.at_level("WARNING", logger="edge.agent"):
        gone = CameraPipeline._watcher(CameraConfig(roi=(10, 10, 40, 80), teach=tmp_path / "missing.npz"))
    assert gone._teach is None and "generic detector" in caplog.text
