"""`isowatch gateway ...`: run the gateway process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from gateway.service import GatewayService
from isowatch.broker import BrokerError, BrokerUrl


@click.group()
def gateway() -> None:
    """The gateway: MQTT ingest into SQLite, and the dashboard."""


@gateway.command()
@click.option("--broker", "broker_url", required=True, envvar="ISOWATCH_BROKER",
              help="mqtt://user:password@host:port of the broker (env ISOWATCH_BROKER).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default="isowatch.db",
              show_default=True, help="SQLite database file (created and migrated if missing).")
@click.option("--site", "sites", multiple=True,
              help="Only this site's topics (repeatable); default all sites.")
@click.option("--client-id", default="isowatch-gateway", show_default=True,
              help="MQTT client id; the broker keeps this id's session while the gateway is down.")
@click.option("--http-port", type=int, default=None, help="Also serve the dashboard on this port.")
@click.option("--http-host", default="127.0.0.1", show_default=True)
def run(broker_url: str, db_path: Path, sites: tuple[str, ...], client_id: str, http_port: int | None,
        http_host: str) -> None:
    """Consume device messages and store them; stops cleanly on SIGTERM or Ctrl-C."""
    try:
        broker = BrokerUrl.parse(broker_url)
    except BrokerError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker") from None
    service = GatewayService(db_path, broker, sites=sites or ("+",), client_id=client_id,
                             http_host=http_host, http_port=http_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        service.start()
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"gateway running: db={db_path} broker={broker.redacted()}"
               + (f" dashboard=http://{http_host}:{service.http_port}/" if http_port is not None else ""), err=True)
    stop.wait()
    service.stop()
    click.echo(f"gateway stopped: {service.ingest.stats()}", err=True)
