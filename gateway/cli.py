"""`isowatch gateway ...`: run the gateway process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from gateway.policy import PolicyError
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
@click.option("--client-id", default=None,
              help="MQTT client id; the broker keeps this id's session while the gateway is down. Default: the "
                   "broker user, which is what our Mosquitto config (use_username_as_clientid) makes it anyway.")
@click.option("--http-port", type=int, default=None, help="Also serve the dashboard on this port.")
@click.option("--http-host", default="127.0.0.1", show_default=True)
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Escalation policy (YAML or TOML); default the packaged one. See docs/alerts.md.")
@click.option("--public-url", default=None, envvar="ISOWATCH_PUBLIC_URL",
              help="Base URL of acknowledge links as phones reach this server; default http://HTTP_HOST:HTTP_PORT.")
@click.option("--admin-token", default="", envvar="ISOWATCH_ADMIN_TOKEN",
              help="Bearer token for the registry REST API (env ISOWATCH_ADMIN_TOKEN); API off when empty.")
def run(broker_url: str, db_path: Path, sites: tuple[str, ...], client_id: str | None, http_port: int | None,
        http_host: str, policy_path: Path | None, public_url: str | None, admin_token: str) -> None:
    """Consume device messages and store them; stops cleanly on SIGTERM or Ctrl-C."""
    try:
        broker = BrokerUrl.parse(broker_url)
    except BrokerError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker") from None
    try:
        service = GatewayService(db_path, broker, sites=sites or ("+",),
                                 client_id=client_id or broker.username or "isowatch-gateway",
                                 http_host=http_host, http_port=http_port, policy=policy_path,
                                 public_url=public_url, admin_token=admin_token)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
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


@gateway.command("push-config")
@click.option("--broker", "broker_url", required=True, envvar="ISOWATCH_BROKER",
              help="mqtt://operator:password@host:port: a broker user of its own, not the running gateway's.")
@click.option("--site", required=True, help="The device's site.")
@click.option("--household", required=True, help="The device's household.")
@click.argument("config_file", type=click.File("rb"))
def push_config(broker_url: str, site: str, household: str, config_file) -> None:  # type: ignore[no-untyped-def]
    """Validate CONFIG_FILE (JSON: version, device, camera overrides, heartbeat_s, temperature_times) and
    publish it retained to the device; the device applies it live and reports the version it runs."""
    from pydantic import ValidationError

    from gateway.device_config import PushError, push_device_config
    from isowatch.contract import DeviceConfig

    try:
        config = DeviceConfig.model_validate_json(config_file.read())
        push_device_config(BrokerUrl.parse(broker_url), site, household, config)
    except ValidationError as exc:
        raise click.ClickException(f"{config_file.name}: {exc}") from None
    except (BrokerError, PushError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"config {config.version} pushed to {config.device}; its status will show the version it applied")

