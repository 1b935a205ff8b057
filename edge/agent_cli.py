"""`isowatch edge ...`: run the edge agent, or validate its config without running."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from edge.config import EdgeConfigError, load_edge_config

CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default="edge.toml",
    show_default=True, envvar="ISOWATCH_EDGE_CONFIG", help="Edge config file (TOML).",
)


@click.group()
def edge() -> None:
    """The edge agent: camera, sensors, outbox and uplink of one household's box."""


@edge.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path) -> None:
    """Validate the config file and print a summary; exit 1 with every problem listed."""
    try:
        config = load_edge_config(config_path)
    except EdgeConfigError as exc:
        raise click.ClickException(str(exc)) from None
    camera = f"camera roi={list(config.camera.roi)} source={config.capture.source}" if config.camera and config.capture else "no camera"
    click.echo(f"{config_path}: ok: device {config.device.id} of {config.device.site}/{config.device.household}, "
               f"{camera}, {len(config.sensors)} sensor(s), outbox {config.outbox.path}")


@edge.command()
@CONFIG_OPTION
@click.option("--for", "run_for", type=click.FloatRange(min=0.1), default=None,
              help="Stop after this many seconds (tests, demos); default until SIGTERM or Ctrl-C.")
def run(config_path: Path, run_for: float | None) -> None:
    """Run the agent until SIGTERM or Ctrl-C, then flush, go offline and exit."""
    from edge.agent import EdgeAgent

    try:
        config = load_edge_config(config_path)
    except EdgeConfigError as exc:
        raise click.ClickException(str(exc)) from None
    agent = EdgeAgent(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent.start()
    click.echo(f"edge agent running: device={config.device.id} outbox={config.outbox.path}", err=True)
    stop.wait(run_for)
    agent.stop()
    click.echo(f"edge agent stopped: outbox depth {agent.outbox.depth()}, sent {agent.courier.sent}", err=True)
