"""`isowatch detect` and `isowatch calibrate` through click's CliRunner, and the [camera] TOML they share."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from edge.camera_config import CameraConfig
from edge.camera_toml import CameraConfigError, load_camera_config, replace_section, save_camera_config, toml_value
from edge.scenes import generate_clip
from isowatch_app.cli import cli


@pytest.fixture(scope="module")
def opening_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("cli") / "full_open.mp4"
    labels = generate_clip(path, "full_open", seed=5, width=320, height=240, fps=10, seconds=12)
    return path, labels


def roi_text(labels: dict) -> str:
    return ",".join(str(v) for v in labels["roi"])


def test_detect_json_prints_one_object_per_line_in_the_issue_format(opening_clip: tuple[Path, dict]) -> None:
    path, labels = opening_clip
    result = CliRunner().invoke(cli, ["detect", str(path), "--roi", roi_text(labels), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 1
    (door,) = lines
    assert list(door) == ["type", "start_s", "end_s", "exit_suspected"]
    assert door["type"] == "door_open" and door["exit_suspected"] is False
    truth = labels["door_open"][0]
    assert abs(door["start_s"] - truth["start_s"]) <= 1.5
    assert truth["end_s"] is None or abs(door["end_s"] - truth["end_s"]) <= 1.5


def test_detect_json_reports_tamper_with_reason_and_open_end(tmp_path: Path) -> None:
    path = tmp_path / "bumped.mp4"
    labels = generate_clip(path, "bumped", seed=6, width=320, height=240, fps=10, seconds=12)
    result = CliRunner().invoke(cli, ["detect", str(path), "--roi", roi_text(labels), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(d["type"], d["reason"], d["end_s"]) for d in lines] == [("camera_tamper", "moved", None)]
    assert list(lines[0]) == ["type", "reason", "start_s", "end_s"]


def test_detect_without_json_prints_a_table(opening_clip: tuple[Path, dict]) -> None:
    path, labels = opening_clip
    result = CliRunner().invoke(cli, ["detect", str(path), "--roi", roi_text(labels)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("event"))
    assert "start_s" in lines[header] and "end_s" in lines[header]
    assert lines[header + 1].split()[0] == "door_open"


@pytest.mark.parametrize("roi", ["1,2,3", "a,b,c,d", "0,0,4,4"])
def test_detect_refuses_a_bad_roi(opening_clip: tuple[Path, dict], roi: str) -> None:
    result = CliRunner().invoke(cli, ["detect", str(opening_clip[0]), "--roi", roi, "--json"])
    assert result.exit_code == 2 and "roi" in result.output.lower()


def test_detect_refuses_a_roi_outside_the_frame(opening_clip: tuple[Path, dict]) -> None:
    result = CliRunner().invoke(cli, ["detect", str(opening_clip[0]), "--roi", "300,200,100,100", "--json"])
    assert result.exit_code == 1 and "outside" in result.output


def test_calibrate_writes_camera_section_and_reference_keeping_other_sections(opening_clip: tuple[Path, dict], tmp_path: Path) -> None:
    path, labels = opening_clip
    config = tmp_path / "edge.toml"
    config.write_text('# the edge box\n[uplink]\nbroker = "mqtts://gw:8883"\n\n[camera]\nroi = [1, 2, 30, 40]\nstructure_threshold = 0.5\n\n[sensors]\nport = "/dev/ttyUSB0"\n')
    result = CliRunner().invoke(cli, ["calibrate", "--source", str(path), "--roi", roi_text(labels), "--config", str(config)])
    assert result.exit_code == 0, result.output
    data = tomllib.loads(config.read_text())
    assert data["uplink"] == {"broker": "mqtts://gw:8883"} and data["sensors"] == {"port": "/dev/ttyUSB0"}
    assert config.read_text().startswith("# the edge box\n[uplink]\n")
    assert data["camera"]["roi"] == labels["roi"]
    assert data["camera"]["structure_threshold"] == 0.5  # a tuned knob survives recalibration
    reference = tmp_path / data["camera"]["reference_frame"]
    frame = cv2.imread(str(reference))
    assert frame is not None and frame.shape[:2] == (240, 320)
    loaded = load_camera_config(config)
    assert loaded.roi == tuple(labels["roi"]) and loaded.reference_frame == reference

    replayed = CliRunner().invoke(cli, ["detect", str(path), "--config", str(config), "--use-reference", "--json"])
    assert replayed.exit_code == 0, replayed.output
    assert [json.loads(line)["type"] for line in replayed.output.splitlines()] == ["door_open"]


def test_calibrate_creates_a_missing_config(opening_clip: tuple[Path, dict], tmp_path: Path) -> None:
    path, labels = opening_clip
    config = tmp_path / "new" / "edge.toml"
    result = CliRunner().invoke(cli, ["calibrate", "--source", str(path), "--roi", roi_text(labels), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert load_camera_config(config).roi == tuple(labels["roi"])


def test_loading_a_misspelt_knob_names_it(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("[camera]\nroi = [1, 2, 30, 40]\nstructure_treshold = 0.5\n")
    with pytest.raises(CameraConfigError, match="structure_treshold"):
        load_camera_config(config)


def test_save_refuses_to_overwrite_a_broken_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("[uplink\nbroker = 1\n")
    with pytest.raises(CameraConfigError):
        save_camera_config(config, CameraConfig(roi=(1, 2, 30, 40)))
    assert config.read_text() == "[uplink\nbroker = 1\n"


flat_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.lists(st.integers(min_value=0, max_value=10000), max_size=5),
)


@given(value=flat_values)
def test_toml_value_reads_back_as_written(value: object) -> None:
    assert tomllib.loads(f"x = {toml_value(value)}")["x"] == value


@given(before=st.dictionaries(st.sampled_from(["a", "b", "uplink"]), st.integers(), max_size=3))
def test_replace_section_keeps_other_tables(before: dict[str, int]) -> None:
    document = "".join(f"[{name}]\nv = {value}\n\n" for name, value in before.items())
    updated = replace_section(document, "camera", "[camera]\nroi = [1, 2, 3, 4]\n")
    data = tomllib.loads(updated)
    assert {k: v["v"] for k, v in data.items() if k != "camera"} == before
    assert data["camera"] == {"roi": [1, 2, 3, 4]}
    again = replace_section(updated, "camera", "[camera]\nroi = [5, 6, 7, 8]\n")
    assert tomllib.loads(again)["camera"] == {"roi": [5, 6, 7, 8]}
