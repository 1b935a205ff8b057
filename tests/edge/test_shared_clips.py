"""Every labelled sample clip in ../shared/door-clips: openings found within 1.5 s, none invented, tampering found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.replay import DoorInterval, TamperInterval, replay
from edge.scoring import score_openings, tamper_found

CLIPS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "door-clips"
CLIPS = sorted(p.stem for p in CLIPS_DIR.glob("*.mp4")) if CLIPS_DIR.is_dir() else []


@pytest.fixture
def clip(request: pytest.FixtureRequest, shared_dir: Path) -> tuple[dict, list]:
    path = shared_dir / "door-clips" / f"{request.param}.mp4"
    labels = json.loads(path.with_suffix(".json").read_text())
    return labels, list(replay(path, tuple(labels["roi"])))


@pytest.mark.parametrize("clip", CLIPS or [pytest.param("none", marks=pytest.mark.skip(reason=f"{CLIPS_DIR} is absent"))], indirect=True)
def test_clip_openings_and_tampering_match_labels(clip: tuple[dict, list]) -> None:
    labels, intervals = clip
    doors = [i for i in intervals if isinstance(i, DoorInterval)]
    tampers = [i.as_json() for i in intervals if isinstance(i, TamperInterval)]
    score = score_openings([d.start_s for d in doors], [t["start_s"] for t in labels["door_open"]])
    assert score.false_negatives == 0, f"missed openings: predicted {doors}, true {labels['door_open']}"
    assert score.false_positives == 0, f"false openings: predicted {doors}, true {labels['door_open']}"
    for truth in labels["camera_tamper"]:
        assert tamper_found(tampers, truth, labels["seconds"]), f"tamper {truth} not found in {tampers}"
    assert len(tampers) == len(labels["camera_tamper"]), f"spurious tampering {tampers}"


def test_exit_clip_flags_exit_and_passers_do_not(shared_dir: Path) -> None:
    def openings(name: str) -> list[DoorInterval]:
        path = shared_dir / "door-clips" / f"{name}.mp4"
        roi = tuple(json.loads(path.with_suffix(".json").read_text())["roi"])
        return [i for i in replay(path, roi) if isinstance(i, DoorInterval)]

    exits = openings("exit_1001")
    assert len(exits) == 1 and exits[0].exit_suspected
    plain = openings("full_open_1001") + openings("passer_and_open_1001") + openings("cycles_1001")
    assert plain and not any(o.exit_suspected for o in plain)
