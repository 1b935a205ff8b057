"""Docs kept honest: every topic kind, payload field and command is documented; CI runs the README's command."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from isowatch import contract
from isowatch_app.cli import cli
from tests.conftest import REPO_ROOT

PROTOCOL = (REPO_ROOT / "docs" / "protocol.md").read_text()
README = (REPO_ROOT / "README.md").read_text()


@pytest.mark.parametrize("kind", list(contract.TopicKind))
def test_every_topic_kind_is_documented(kind):
    assert f"`{kind.value}" in PROTOCOL


@pytest.mark.parametrize(
    "model",
    [contract.DoorEvent, contract.TamperEvent, contract.TemperatureReading, contract.ContactReading,
     contract.Status, contract.Heartbeat, contract.GatewayAck, contract.SnapshotMeta, contract.DeviceConfig],
)
def test_every_payload_field_is_documented(model):
    assert f"`{model.__name__}`" in PROTOCOL
    missing = [name for name in model.model_fields if f"`{name}`" not in PROTOCOL]
    assert not missing, f"{model.__name__} fields missing from docs/protocol.md: {missing}"


def walk(group: click.Group, ctx: click.Context, prefix: str = "isowatch"):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, parent=ctx, info_name=name), path)


def all_commands():
    return list(walk(cli, click.Context(cli, info_name="isowatch")))


@pytest.mark.parametrize("path", [p for p, _ in all_commands()])
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    command = dict(all_commands())[path]
    assert command.help or command.short_help, f"{path} has no help text"


def test_cli_reference_is_current():
    from scripts.cli_reference import render

    current = (REPO_ROOT / "docs" / "cli.md").read_text()
    assert current == render(), "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert len(blocks) >= 2
    assert "bash scripts/test.sh" == blocks[1].strip()
    assert "exec bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def test_the_test_command_lints_and_type_checks_before_the_tests():
    script = (REPO_ROOT / "scripts" / "test.sh").read_text().splitlines()
    ruff, mypy, pytest = (script.index(line) for line in (
        ".venv/bin/ruff check .", ".venv/bin/mypy", 'exec .venv/bin/python -m pytest "$@"'))
    assert ruff < pytest and mypy < pytest


def test_docs_mosquitto_config_is_the_one_the_tests_use():
    packaged = (REPO_ROOT / "isowatch" / "mosquitto.conf").read_text()
    assert (REPO_ROOT / "docs" / "mosquitto.conf").read_text() == packaged
    for setting in ("persistence true", "allow_anonymous false", "max_queued_messages 2000000"):
        assert setting in packaged


def test_protocol_schema_command_prints_json_schema():
    result = CliRunner().invoke(cli, ["protocol", "schema"])
    assert result.exit_code == 0
    assert '"DoorEvent"' in result.output


def test_every_edge_config_key_is_documented():
    from edge.config import CaptureSection, DeviceSection, HeartbeatSection, OutboxSection, UplinkSection
    from firmware_bridge.sensors import LineSensor, ModbusSensor, ZigbeeSensor

    doc = (REPO_ROOT / "docs" / "edge-agent.md").read_text()
    sections = [DeviceSection, UplinkSection, OutboxSection, CaptureSection, HeartbeatSection, LineSensor,
                ModbusSensor, ZigbeeSensor]
    missing = [f"{s.__name__}.{name}" for s in sections for name in s.model_fields if f"`{name}`" not in doc]
    assert not missing, f"edge config keys missing from docs/edge-agent.md: {missing}"


def test_no_merge_conflict_markers_are_committed():
    """A conflict resolved in code but not in a doc still passes every other test: look for the markers."""
    import subprocess

    root = REPO_ROOT
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    found = subprocess.run(["git", "grep", "-n", "-E", "^(<<<<<<< |>>>>>>> |=======$)", "--", ".",
                            ":!tests/test_docs.py"], cwd=root, capture_output=True, text=True).stdout
    assert found == ""
