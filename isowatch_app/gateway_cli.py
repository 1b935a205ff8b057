"""`isowatch gateway ...`: run the gateway process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import IO

import click

from gateway import integrity
from gateway.integrity import BackupFailed, DatabaseDamaged, DiskFull
from gateway.policy import PolicyError
from isowatch.broker import BrokerError, BrokerUrl
from isowatch_app.site import SiteService


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
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where verified online backups go; default DB.backups beside the database.")
@click.option("--backup-every-h", type=click.FloatRange(min=0), default=6.0, show_default=True,
              help="Hours between backups; 0 turns them off.")
@click.option("--backup-keep", type=click.IntRange(min=1), default=7, show_default=True,
              help="Verified backups kept (the oldest go).")
@click.option("--integrity-check-every-h", type=click.FloatRange(min=0.01), default=24.0, show_default=True,
              help="Hours between full PRAGMA integrity_check runs (in a thread; ingest goes on).")
def run(broker_url: str, db_path: Path, sites: tuple[str, ...], client_id: str | None, http_port: int | None,
        http_host: str, policy_path: Path | None, public_url: str | None, admin_token: str,
        backup_dir: Path | None, backup_every_h: float, backup_keep: int, integrity_check_every_h: float) -> None:
    """Consume device messages and store them; stops cleanly on SIGTERM or Ctrl-C.

    At start the database and its write-ahead log are checked; a damaged one is refused with the
    command that restores it (docs/operations.md)."""
    try:
        broker = BrokerUrl.parse(broker_url)
    except BrokerError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker") from None
    if backup_every_h and backup_dir is None:
        backup_dir = integrity.default_backup_dir(db_path)
    try:
        service = SiteService(db_path, broker, sites=sites or ("+",),
                                 client_id=client_id or broker.username or "isowatch-gateway",
                                 http_host=http_host, http_port=http_port, policy=policy_path,
                                 public_url=public_url, admin_token=admin_token,
                                 backup_dir=backup_dir if backup_every_h else None,
                                 backup_every_s=backup_every_h * 3600, backup_keep=backup_keep,
                                 integrity_check_every_s=integrity_check_every_h * 3600)
    except (PolicyError, DatabaseDamaged, DiskFull) as exc:
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
def push_config(broker_url: str, site: str, household: str, config_file: IO[bytes]) -> None:
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



@gateway.command()
@click.option("--db", "db_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="isowatch.db",
              show_default=True, help="The gateway database.")
@click.option("--full", is_flag=True, help="PRAGMA integrity_check (reads every row and index) instead of quick_check.")
def check(db_path: Path, full: bool) -> None:
    """Check the database and its write-ahead log without changing them; exit status 1 when damaged."""
    try:
        integrity.check_at_start(db_path)
        findings = integrity.quick_check(db_path, full=full) if full else ["ok"]
    except (DatabaseDamaged, DiskFull) as exc:
        raise click.ClickException(str(exc)) from None
    if findings != ["ok"]:
        raise click.ClickException(f"{db_path} failed integrity_check: {'; '.join(findings[:5])}. "
                                   + integrity.remedy(db_path))
    click.echo(f"{db_path}: ok")


@gateway.command()
@click.option("--db", "db_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="isowatch.db",
              show_default=True, help="The gateway database (it may be in use: the copy is online).")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the copy goes; default DB.backups beside the database.")
@click.option("--keep", type=click.IntRange(min=1), default=7, show_default=True, help="Verified backups kept.")
def backup(db_path: Path, backup_dir: Path | None, keep: int) -> None:
    """Copy the database now with SQLite's online backup API, verify the copy, keep the newest KEEP."""
    try:
        target = integrity.backup(db_path, backup_dir or integrity.default_backup_dir(db_path), keep)
    except BackupFailed as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written and verified: {target}")


@gateway.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default="isowatch.db",
              show_default=True, help="The gateway database to replace; the gateway must be stopped.")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where backups are; default DB.backups beside the database.")
@click.argument("backup_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore(db_path: Path, backup_dir: Path | None, backup_file: Path | None) -> None:
    """Put BACKUP_FILE (default: the newest verified backup) in place of the database. The files it
    replaces are kept as DB.replaced-TIME; messages devices still hold in their outboxes come again."""
    if backup_file is None:
        found = integrity.backups(backup_dir or integrity.default_backup_dir(db_path))
        if not found:
            raise click.ClickException(f"no backups in {backup_dir or integrity.default_backup_dir(db_path)}")
        backup_file = found[-1]
    try:
        moved = integrity.restore(backup_file, db_path)
    except (BackupFailed, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {backup_file} to {db_path}" + (f"; the replaced files are {moved}*" if moved else ""))
