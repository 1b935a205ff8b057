"""The `isowatch` command: a thin front over each package's library API.

Subcommands are imported on first use, so an edge box without the gateway's dependencies can still
run `isowatch edge` and `isowatch detect`.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from isowatch import __version__
from isowatch.contract import json_schema_text

# name -> "module:attribute" of a click command; each package owns its own commands.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("isowatch_app.demo:demo", "Run broker, gateway, dashboard and simulated households."),
    "gateway": ("isowatch_app.gateway_cli:gateway", "Run the gateway: MQTT ingest into SQLite."),
    "admin": ("isowatch_app.admin_cli:admin", "Registry chores: import households, staff, teams; devices; policy."),
    "edge": ("edge.agent_cli:edge", "Run the edge agent of one household's box, or check its config."),
    "detect": ("edge.cli:detect", "Replay door-camera footage through the detector."),
    "calibrate": ("edge.cli:calibrate", "Save a reference frame and the door ROI to the edge config."),
    "check-door": ("edge.cli:check_door", "Field check of a new door: its openings and a contact sheet."),
    "simulate": ("isowatch_app.simulate:simulate", "Drive a broker with a simulated fleet of households (bench/test)."),
    "bridge": ("edge.sensor_cli:bridge", "Serial and Modbus sensors: read once or stream to the uplink."),
}


OWN_PACKAGES = {"isowatch", "edge", "firmware_bridge", "gateway", "dashboard"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            target, short_help = LAZY_COMMANDS[cmd_name]
            module_name, attr = target.split(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                if (exc.name or "").split(".")[0] in OWN_PACKAGES:
                    raise  # our own bug, not a missing extra
                return _missing_dependency_command(cmd_name, short_help, exc.name or str(exc))
            return getattr(module, attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from the table so `isowatch --help` imports nothing heavy.
        rows = [(name, LAZY_COMMANDS[name][1]) for name in LAZY_COMMANDS]
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(80)))
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


def _missing_dependency_command(name: str, short_help: str, missing: str) -> click.Command:
    @click.command(name=name, short_help=short_help, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args: tuple[str, ...]) -> None:
        raise click.ClickException(
            f"`isowatch {name}` needs the Python module {missing!r}, which is not installed. "
            "Install the matching extra, e.g. pip install 'isowatch[edge]' or 'isowatch[gateway]'."
        )

    return unavailable


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="isowatch")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """isowatch: door and temperature watch for households in home isolation.

    Edge boxes detect door openings and read thermometers; the gateway stores events, raises alerts
    and notifies the household's team; the dashboard shows it all. Start with `isowatch demo`.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s %(message)s")


@cli.group()
def protocol() -> None:
    """The MQTT wire contract (see docs/protocol.md)."""


@protocol.command()
def schema() -> None:
    """Print the JSON Schema of every payload, keyed by topic kind."""
    click.echo(json_schema_text())


def main() -> None:
    sys.exit(cli.main(prog_name="isowatch", standalone_mode=True))


if __name__ == "__main__":
    main()
