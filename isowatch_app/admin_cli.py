"""`isowatch admin ...`: registry and policy chores on the gateway database (a thin front over gateway.registry)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from dashboard.accounts import ROLES
from gateway import alerts
from gateway.policy import PolicyError, load_policy
from gateway.registry import IsolationIn, Registry, RegistryError, VisitIn
from gateway.registry_import import ImportProblem, apply, parse_file
from gateway.store import connect, open_database
from isowatch.clock import SystemClock

db_option = click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default="isowatch.db",
                         show_default=True, envvar="ISOWATCH_DB", help="Gateway database (env ISOWATCH_DB).")


def _at_most(limit: int) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and len(value) > limit:
            raise click.BadParameter(f"at most {limit} characters")
        return value

    return check


by_option = click.option("--by", default="admin-cli", show_default=True, callback=_at_most(64),
                         help="Who is doing this (audit log).")


def _registry(db_path: Path, *, create: bool = False, create_hint: str = "") -> Registry:
    """The registry in `db_path`, migrated. A missing database is an error unless `create`: the default
    --db is relative, so the wrong working directory would otherwise get a new, empty database that the
    running gateway never reads, and the command would report success."""
    if not create and not db_path.exists():
        raise click.ClickException(f"no database at {db_path.resolve()}: give the gateway's database with --db "
                                   f"(or ISOWATCH_DB){create_hint}")
    open_database(db_path).close()  # create and migrate when missing
    return Registry(connect(db_path), SystemClock())


@click.group()
def admin() -> None:
    """Registry chores: import households, staff and teams; register devices; isolation periods; policy."""


@admin.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@by_option
def import_(file: Path, db_path: Path, by: str) -> None:
    """Load sites, staff, teams, households and isolations from a CSV or YAML FILE.

    The whole file is checked first; each problem is reported as FILE:LINE: where: what.
    """
    try:
        plan = parse_file(file)
        counts = apply(plan, _registry(db_path, create=True), by=by, source=str(file))  # first setup
    except ImportProblem as exc:
        raise click.ClickException(f"{len(exc.problems)} problem(s):\n" + "\n".join(exc.problems)) from None
    click.echo(" ".join(f"{k}={v}" for k, v in counts.items()) or "nothing to import")


@admin.command("check-policy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
def check_policy(file: Path | None) -> None:
    """Validate an escalation policy FILE (YAML or TOML); without FILE, the packaged default."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    for kind, rule in policy.kinds.items():
        steps = " -> ".join(f"{'+'.join(s.notify)} ({s.wait_minutes:g} min)" for s in rule.steps)
        click.echo(f"{kind.value}: {steps}")


@admin.command("register-device")
@click.argument("device")
@click.argument("household")
@db_option
@by_option
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rewrite Mosquitto's password file (and --acl-file) with every registered device.")
@click.option("--acl-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--gateway-password", envvar="ISOWATCH_GATEWAY_PASSWORD", default=None,
              help="The gateway's broker password, written to the password file (env ISOWATCH_GATEWAY_PASSWORD).")
@click.option("--broker-pid", type=int, default=None, help="Send this Mosquitto process SIGHUP to reload the files.")
def register_device(device: str, household: str, db_path: Path, by: str, password_file: Path | None,
                    acl_file: Path | None, gateway_password: str | None, broker_pid: int | None) -> None:
    """Bind DEVICE to HOUSEHOLD and issue its broker password (printed once; only its hash is kept)."""
    registry = _registry(db_path)
    try:
        password = registry.register_device(device, household, by=by)
    except (RegistryError, ValueError) as exc:  # ValueError: not a valid topic level
        raise click.ClickException(str(exc)) from None
    if password_file:
        if not (acl_file and gateway_password):
            raise click.UsageError("--password-file needs --acl-file and --gateway-password")
        registry.write_broker_files(password_file, acl_file, gateway_password=gateway_password)
        if broker_pid:
            import os

            os.kill(broker_pid, signal.SIGHUP)
    click.echo(f"device={device} household={household} username={device} password={password}")


@admin.command("start-isolation")
@click.argument("household")
@click.argument("start_date", type=click.DateTime(["%Y-%m-%d"]))
@click.option("--days", type=click.IntRange(1, 60), default=14, show_default=True)
@db_option
@by_option
def start_isolation(household: str, start_date: datetime, days: int, db_path: Path, by: str) -> None:
    """Start an isolation period for HOUSEHOLD on START_DATE (day 1, in the site's timezone)."""
    try:
        period = _registry(db_path).start_isolation(
            IsolationIn(household=household, start_date=start_date.date(), days=days), by=by)
    except (RegistryError, ValueError) as exc:  # ValueError: the model's bounds (pydantic)
        raise click.ClickException(str(exc)) from None
    click.echo(f"isolation={period} household={household} start={start_date.date()} days={days}")


@admin.command("extend-isolation")
@click.argument("period_id", type=int)
@click.argument("days", type=click.IntRange(1, 60))
@db_option
@by_option
def extend_isolation(period_id: int, days: int, db_path: Path, by: str) -> None:
    """Extend isolation period PERIOD_ID by DAYS."""
    try:
        period = _registry(db_path).extend_isolation(period_id, days, by=by)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"isolation={period.id} days={period.days} last_day={period.last_date}")


@admin.command("sign-end")
@click.argument("period_id", type=int)
@click.argument("staff")
@click.option("--reason", default="", callback=_at_most(2000), help="Why the isolation ends early.")
@db_option
def sign_end(period_id: int, staff: str, reason: str, db_path: Path) -> None:
    """Sign off an early end as STAFF; it ends once the medical worker and the team leader both signed."""
    try:
        period = _registry(db_path).sign_end(period_id, staff=staff, reason=reason)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"isolation={period.id} " + (f"ended_at={period.ended_at.isoformat()}" if period.ended_at
                                             else "awaiting the other signature"))


@admin.command("announce-visit")
@click.argument("household")
@click.argument("kind", type=click.Choice(["supplies", "rubbish", "hospital", "other"]))
@click.argument("starts_at")
@click.argument("ends_at")
@click.option("--note", default="", callback=_at_most(2000))
@db_option
@by_option
def announce_visit(household: str, kind: str, starts_at: str, ends_at: str, note: str, db_path: Path, by: str) -> None:
    """Announce a visit window (ISO 8601 times with offset) during which door openings are expected."""
    try:
        visit = VisitIn(household=household, kind=kind, starts_at=starts_at, ends_at=ends_at, note=note)
        number = _registry(db_path).add_visit(visit, by=by)
    except (RegistryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"visit={number} household={household}")


@admin.command("resident-link")
@click.argument("household")
@click.option("--public-url", envvar="ISOWATCH_PUBLIC_URL", required=True,
              help="The gateway's public URL, as given to `isowatch gateway run` (env ISOWATCH_PUBLIC_URL).")
@click.option("--qr", "qr_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the link as a QR code to this PNG file (for the isolation notice).")
@click.option("--revoke", is_flag=True, help="End the household's link now (the next call issues a new one).")
@db_option
@by_option
def resident_link(household: str, public_url: str, qr_file: Path | None, revoke: bool, db_path: Path, by: str) -> None:
    """Print HOUSEHOLD's own link (last line): announce an opening, report a temperature, ask for help.

    The same link on every call until --revoke; it works only while the household is isolated.
    """
    from gateway.ack_links import load_or_create_secret
    from gateway.qr_png import write_qr
    from gateway.resident import ResidentLinks, link_url

    registry = _registry(db_path)
    secret = load_or_create_secret(db_path.with_name(db_path.name + ".secret"))  # the gateway's signing key
    links = ResidentLinks(secret, registry.clock, load_policy())
    try:
        registry.household(household)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if revoke:
        ended = links.revoke(registry.conn, household, by=by)
        click.echo(f"household={household} link revoked" if ended else f"household={household} had no link")
        return
    url = link_url(public_url, links.issue(registry.conn, household, by=by))
    if registry.active_isolation(household, registry.clock.now()) is None:
        click.echo(f"warning: {household} has no active isolation period; the link works only during one", err=True)
    if qr_file:
        write_qr(url, qr_file)
        click.echo(f"qr={qr_file}")
    click.echo(url)


@admin.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES),
              default="admin", show_default=True)
@click.option("--name", "display_name", default="", help="Display name (default USERNAME).")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--staff", default=None, help="Registry staff id: the user sees the households of that member's teams.")
@click.option("--team", "teams", multiple=True, help="Extra team membership (repeatable).")
@click.password_option(envvar="ISOWATCH_NEW_PASSWORD",
                       help="At least 10 characters, not a common or repetitive password nor the username "
                            "(env ISOWATCH_NEW_PASSWORD).")
@db_option
@click.option("--create-db", is_flag=True,
              help="Create the database when --db does not exist (a first admin before the gateway ever ran); "
                   "without it a missing database is an error, so a mistyped path cannot create a user nobody sees.")
@by_option
def create_user(username: str, role: str, display_name: str, language: str, staff: str | None,
                teams: tuple[str, ...], password: str, db_path: Path, create_db: bool, by: str) -> None:
    """Create a dashboard user, the first admin included; the password is stored as an argon2 hash."""
    from pydantic import ValidationError

    from dashboard.accounts import AccountError, UserCreate
    from dashboard.accounts import create_user as create

    registry = _registry(db_path, create=create_db, create_hint=", or pass --create-db to start a new, empty one")
    try:
        new = UserCreate(username=username, display_name=display_name, role=role, language=language,
                         password=password, staff=staff, teams=list(teams))
        user = create(registry.conn, new, by=by, now=SystemClock().now())
    except (ValidationError, AccountError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user={user.username} role={user.role} teams={','.join(user.teams) or '-'} db={db_path.resolve()}")


@admin.command("resolve")
@click.argument("alert_id", type=int)
@click.argument("verdict", type=click.Choice(list(alerts.VERDICTS)))
@click.option("--staff", required=True, callback=_at_most(64), help="Who resolves it.")
@click.option("--note", default="", callback=_at_most(2000))
@db_option
def resolve(alert_id: int, verdict: str, staff: str, note: str, db_path: Path) -> None:
    """Close alert ALERT_ID with a VERDICT and a note."""
    registry = _registry(db_path)
    try:
        alerts.resolve(registry.conn, alert_id, staff=staff, verdict=verdict, note=note, now=SystemClock().now())
    except alerts.AlertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"alert={alert_id} verdict={verdict}")
