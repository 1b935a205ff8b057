"""`isowatch demo`: broker, gateway, dashboard and simulated households on one machine."""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from gateway.inbox import LocalInbox
from gateway.registry import HouseholdIn, IsolationIn, Registry, SiteIn, StaffIn, TeamIn
from gateway.service import GatewayService
from isowatch.broker import MosquittoBroker, start_embedded_broker
from isowatch.localtime import DEFAULT_ZONE
from isowatch_app.demo_household import DemoHousehold
from isowatch_app.site import SiteService

DEMO_SITE = "demo-street"
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/l/I to misread
DEMO_STAFF = {"leader": ("demo-leader", "王队长", "zh"), "medical": ("demo-medical", "Dr. Li", "en"),
              "police": ("demo-police", "赵警官", "zh"), "social": ("demo-social", "陈社工", "zh")}


def summary(service: GatewayService) -> dict[str, int]:
    counts = service.store.counts()
    alerting = service.alerts.summary() if service.alerts else {"alerts": 0, "notifications_sent": 0}
    return {
        "events_stored": counts["events"] + counts["readings"],
        "rejected": counts["rejects"],
        "alerts": alerting["alerts"],
        "notifications_sent": alerting["notifications_sent"],
    }


def seed_registry(db_path: Path, households: int, inbox: LocalInbox) -> Registry:
    """Demo staff (one team of four, contact URLs pointing at the local inbox) and isolated households."""
    registry = Registry(sqlite3.connect(db_path, timeout=30))
    registry.upsert_site(SiteIn(site=DEMO_SITE, name="Demo street"))
    staff = DEMO_STAFF
    for n, (role, (ident, name, language)) in enumerate(staff.items(), start=1):
        registry.upsert_staff(StaffIn(staff=ident, name=name, role=role, language=language,
                                      contacts=[inbox.url(ident)], phone=f"+86 138 0000 000{n}"))
    registry.upsert_team(TeamIn(team="demo-team", name="Demo team", **{r: s[0] for r, s in staff.items()}))
    started = (datetime.now(ZoneInfo(DEFAULT_ZONE)) - timedelta(days=3)).date()
    for n in range(1, households + 1):
        household = f"hh-{n:04d}"
        registry.upsert_household(HouseholdIn(household=household, site=DEMO_SITE, address=f"Demo Rd {n}",
                                              unit=f"{100 + n}", team="demo-team", elderly_alone=n == 1))
        if not registry.isolations(household):
            registry.start_isolation(IsolationIn(household=household, start_date=started), by="demo")
    return registry


def _password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(16))


def seed_logins(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """A demo admin and one login per staff role, each bound to its demo staff member (so it sees the demo
    team's alerts), with fresh random passwords: (username, password), admin first. A kept --data-dir
    gets new passwords on every run rather than a second set of users."""
    from dashboard.accounts import UserCreate, UserExists, create_user, set_password

    now = datetime.now(ZoneInfo("UTC"))
    wanted = [UserCreate(username="demo-admin", display_name="Demo admin", role="admin", language="zh",
                         password=_password())]
    wanted += [UserCreate(username=ident, display_name=name, role=role, language=language, staff=ident,
                          password=_password()) for role, (ident, name, language) in DEMO_STAFF.items()]
    for user in wanted:
        try:
            create_user(conn, user, by="demo", now=now)
        except UserExists:
            set_password(conn, user.username, user.password, by="demo", now=now)
    return [(user.username, user.password) for user in wanted]


@click.command()
@click.option("--households", type=click.IntRange(1, 50), default=3, show_default=True,
              help="How many simulated households, each a real edge agent watching a generated door clip "
                   "with thermometer firmware on a pseudo-terminal.")
@click.option("--for", "run_for", type=click.FloatRange(min=1), default=None,
              help="Run this many seconds, then stop cleanly; default until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Dashboard port (0: any free port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the database and broker files here; default a temporary directory.")
@click.option("--broker", "broker_choice", type=click.Choice(["auto", "mosquitto", "amqtt"]), default="auto",
              show_default=True, help="Which embedded broker: system Mosquitto when installed, else amqtt.")
def demo(households: int, run_for: float | None, port: int, data_dir: Path | None, broker_choice: str) -> None:
    """Run everything on this machine and print the dashboard URL, its logins and where the database is.

    Logins are printed as `login: USER / PASSWORD` lines (random passwords, new on every run), the demo
    admin first, then one staff member per role of the demo team.

    The last line printed is a JSON summary:
    {"events_stored": N, "rejected": N, "alerts": N, "notifications_sent": N}
    """
    with tempfile.TemporaryDirectory(prefix="isowatch-demo-") as tmp:
        root = data_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            broker = start_embedded_broker(root, prefer=broker_choice)
        except Exception as exc:
            raise click.ClickException(f"could not start a broker: {exc}") from None
        kind = "mosquitto" if isinstance(broker, MosquittoBroker) else "amqtt (demo only)"
        click.echo(f"broker: {kind} on 127.0.0.1:{broker.port}", err=True)
        service = SiteService(root / "isowatch.db", broker.url(), http_port=port, http_host="127.0.0.1")
        # Staff phones are a local receiver here: every notification Apprise delivers lands in it.
        inbox = LocalInbox().start()
        registry = seed_registry(root / "isowatch.db", households, inbox)
        logins = seed_logins(registry.conn)
        fleet: list[DemoHousehold] = []
        try:
            service.start()
            click.echo(f"database: {(root / 'isowatch.db').resolve()} "
                       + ("(kept)" if data_dir else "(temporary: deleted when the demo stops; --data-dir keeps it)"),
                       err=True)
            click.echo(f"dashboard: http://127.0.0.1:{service.http_port}/", err=True)
            for username, password in logins:
                click.echo(f"login: {username} / {password}", err=True)
            click.echo(f"delivered notifications: {inbox.page} (JSON: {inbox.page}messages.json)", err=True)
            click.echo(f"generating door clips for {households} households...", err=True)
            for n in range(1, households + 1):
                device, household = f"edge-{n:04d}", f"hh-{n:04d}"
                password = registry.register_device(device, household, by="demo")
                fleet.append(DemoHousehold(root / "households", n, DEMO_SITE, household, device,
                                           broker.add_user(device, password)).start())
            click.echo(f"{households} edge agents watching their doors; "
                       + (f"stopping in {run_for:.0f} s" if run_for else "Ctrl-C to stop"), err=True)
            _wait(run_for)
        finally:
            for home in fleet:
                home.stop()
            service.ingest.wait_idle(quiet_s=0.5, timeout=15)
            if service.alerts:
                service.alerts.settle()  # let the pages in flight land before counting them
            result = summary(service)
            for message in inbox.received()[-3:]:
                click.echo(f"delivered to {message.recipient}: {message.title}", err=True)
            inbox.stop()
            registry.conn.close()
            service.stop()
            broker.stop()
        click.echo(json.dumps(result))


def _wait(run_for: float | None) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(run_for) if run_for else _wait_forever(stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_forever(stop: threading.Event) -> None:
    while not stop.wait(1):
        time.sleep(0)
