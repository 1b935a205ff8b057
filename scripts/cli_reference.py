"""Write docs/cli.md from the commands' own --help, so the reference cannot drift (checked by tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from isowatch_app.cli import cli

HEADER = """# Command reference

Generated from `--help` by `python scripts/cli_reference.py`; `tests/test_docs.py` fails when it is stale.
"""


def command_paths(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += command_paths(command, click.Context(command, parent=ctx, info_name=name), (*prefix, name))
    return paths


def render() -> str:
    runner = CliRunner()
    parts = [HEADER, "## isowatch\n\n```\n" + runner.invoke(cli, ["--help"], prog_name="isowatch").output + "```\n"]
    for path in command_paths(cli, click.Context(cli, info_name="isowatch")):
        result = runner.invoke(cli, [*path, "--help"], prog_name="isowatch", terminal_width=100)
        parts.append(f"## isowatch {' '.join(path)}\n\n```\n{result.output}```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    target.write_text(render())
    print(f"wrote {target}", file=sys.stderr)
