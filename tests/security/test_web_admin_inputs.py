"""Admin input bounds: an admin could extend an isolation by 10^12 days (the household page then
answered 500 for everyone), date a visit year 9999 (500), register a device named `gateway`, create users on
teams or staff that do not exist, or import a non-UTF-8 file (500). Every admin input, through the API, the
CLI and the import, is bounded and refused with a clear 4xx (or a click error), and nothing breaks after."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.routes.registry_api import RegistryDesk
from isowatch.clock import SystemClock
from isowatch_app.cli import cli
from tests.dashboard.conftest import seeded, seeded_template  # noqa: F401 - fixtures
from tests.dashboard.world import login

TOKEN = "t" * 32
LONG = "x" * 5000
NOW = SystemClock().now()


@pytest.fixture
def api(seeded):
    app = create_app(seeded.db_path, admin=RegistryDesk(seeded.db_path, SystemClock(), TOKEN))
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
    return seeded, app, client


def _visit(**change) -> dict:
    visit = {"household": "hh-3-502", "kind": "supplies", "starts_at": NOW.isoformat(),
             "ends_at": NOW.replace(hour=(NOW.hour + 1) % 24).isoformat() if NOW.hour < 23 else NOW.isoformat()}
    return {**visit, **change}


BAD_REQUESTS = [
    ("POST", "/api/v1/registry/isolations/1/extend", {"days": 10**12}),
    ("POST", "/api/v1/registry/isolations/1/extend", {"days": 0}),
    ("POST", "/api/v1/registry/isolations", {"household": "hh-3-502", "start_date": "9999-12-31"}),
    ("POST", "/api/v1/registry/isolations", {"household": "hh-3-502", "start_date": "0001-01-01"}),
    ("POST", "/api/v1/registry/visits", _visit(starts_at="9999-12-31T22:00:00-01:00",
                                               ends_at="9999-12-31T23:59:59-01:00")),
    ("POST", "/api/v1/registry/visits", _visit(starts_at="0001-01-01T00:00:00+01:00",
                                               ends_at="0001-01-01T05:00:00+01:00")),
    ("POST", "/api/v1/registry/visits", _visit(starts_at="2026-01-01T00:00:00+08:00",
                                               ends_at="2027-01-01T00:00:00+08:00")),
    ("POST", "/api/v1/registry/visits", _visit(note=LONG)),
    ("POST", "/api/v1/registry/devices", {"device": "gateway", "household": "hh-3-502"}),
    ("POST", "/api/v1/registry/devices", {"device": "Gateway", "household": "hh-3-502"}),
    ("POST", "/api/v1/registry/devices", {"device": "isowatch-gateway", "household": "hh-3-502"}),
    ("POST", "/api/v1/registry/devices", {"device": "isowatch-zigbee", "household": "hh-3-502"}),
    ("POST", "/api/v1/registry/devices", {"device": "operator", "household": "hh-3-502"}),
    ("POST", "/api/v1/registry/devices", {"device": "gw-east", "household": "hh-3-502"}),
    ("POST", "/api/v1/registry/devices", {"device": "cam-x", "household": LONG}),
    ("PUT", "/api/v1/registry/sites", {"site": "site-b", "name": LONG}),
    ("PUT", "/api/v1/registry/staff", {"staff": "s-1", "name": "A", "role": "social", "contacts": ["json://h/x"] * 500}),
    ("PUT", "/api/v1/registry/staff", {"staff": "s-1", "name": "A", "role": "social", "contacts": ["json://" + LONG]}),
    ("PUT", "/api/v1/registry/staff", {"staff": "s 1/..", "name": "A", "role": "social"}),
    ("PUT", "/api/v1/registry/teams", {"team": "t-9", "name": LONG, "leader": "wang-leader", "medical": "li-medical",
                                       "police": "zhao-police", "social": "chen-social"}),
    ("PUT", "/api/v1/registry/households", {"household": "hh-1", "site": "site-a", "address": LONG}),
    ("PUT", "/api/v1/registry/households", {"household": "hh-1", "site": "site-a", "team": "no-such-team"}),
    ("POST", "/api/v1/registry/isolations/1/end-signoff", {"staff": "li-medical", "reason": LONG}),
    ("POST", "/api/v1/registry/alerts/1/resolve", {"staff": "li-medical", "verdict": "false_alarm", "note": LONG * 10}),
]


@pytest.mark.parametrize("method, path, body", BAD_REQUESTS, ids=[f"{m} {p} {i}" for i, (m, p, _) in
                                                                 enumerate(BAD_REQUESTS)])
def test_out_of_bounds_registry_requests_are_refused_with_a_4xx(api, method, path, body):
    s, _, client = api
    answer = client.request(method, path, json=body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert answer.json()["detail"], answer.text
    # And nothing anyone reads is broken by what the admin tried.
    staff = TestClient(create_app(s.db_path))
    login(staff, "chen")
    assert staff.get("/api/v1/households/hh-3-502").status_code == 200
    assert staff.get("/households/hh-3-502").status_code == 200


def test_an_isolation_cannot_be_extended_without_end(api):
    _, _, client = api
    codes = [client.post("/api/v1/registry/isolations/1/extend", json={"days": 60}).status_code for _ in range(8)]
    assert codes[0] == 200 and codes[-1] == 422, codes


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00garbage\x80", "sites: [{site: s, name: caf\u00e9}]".encode("latin-1")])
@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_a_non_utf8_import_is_a_422(api, raw, fmt):
    _, _, client = api
    answer = client.post("/api/v1/registry/import", params={"fmt": fmt}, content=raw)
    assert answer.status_code == 422, answer.text
    assert "UTF-8" in answer.text


def test_an_oversized_import_is_refused(api):
    _, _, client = api
    answer = client.post("/api/v1/registry/import", content=b"sites: []\n" + b"#" * (9 * 1024 * 1024))
    assert answer.status_code == 413, answer.text[:200]


def test_users_on_missing_staff_or_teams_are_refused(api):
    s, app, _ = api
    admin = TestClient(app)
    csrf = login(admin, "admin")
    for extra in ({"staff": "nobody"}, {"teams": ["no-such-team"]}, {"staff": "li-medical", "role": "police"}):
        answer = admin.post("/api/v1/users", headers={"X-CSRF-Token": csrf},
                            json={"username": "new-one", "role": "social", "password": "tide-lantern-41-orchard",
                                  **extra})
        assert answer.status_code == 422, (extra, answer.text)


CLI_CASES = [
    ["extend-isolation", "1", "60"],  # repeated below until the total bound refuses it
    ["start-isolation", "hh-3-502", "9999-12-31"],
    ["announce-visit", "hh-3-502", "supplies", "9999-12-31T22:00:00-01:00", "9999-12-31T23:59:59-01:00"],
    ["register-device", "gateway", "hh-3-502"],
    ["create-user", "new-two", "--role", "social", "--staff", "nobody"],
    ["create-user", "new-three", "--role", "social", "--team", "no-such-team"],
    ["resolve", "1", "false_alarm", "--staff", "li-medical", "--note", LONG * 10],
    ["sign-end", "1", "li-medical", "--reason", LONG],
]


@pytest.mark.parametrize("args", CLI_CASES, ids=[" ".join(a[:2]) for a in CLI_CASES])
def test_the_cli_refuses_out_of_bounds_input_with_a_clean_error(seeded, args):
    env = {"ISOWATCH_NEW_PASSWORD": "tide-lantern-41-orchard"}
    runs = 8 if args[0] == "extend-isolation" else 1
    for _ in range(runs):
        result = CliRunner().invoke(cli, ["admin", *args, "--db", str(seeded.db_path)], env=env)
    assert result.exit_code in (1, 2), (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Error" in result.output, result.output


def test_the_cli_refuses_a_non_utf8_import_file(seeded, tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_bytes("sites: [{site: s, name: caf\u00e9}]".encode("latin-1"))
    result = CliRunner().invoke(cli, ["admin", "import", str(bad), "--db", str(seeded.db_path)])
    assert result.exit_code == 1 and "UTF-8" in result.output, (result.output, result.exception)


def test_a_config_push_is_bounded(seeded):
    pushed = []
    admin = TestClient(create_app(seeded.db_path, push_config=lambda *config: pushed.append(config)))
    csrf = login(admin, "admin")
    answer = admin.post("/api/v1/devices/cam-3502/config", headers={"X-CSRF-Token": csrf},
                        json={"version": "v9", "camera": {"roi": [[1, 2]] * 20_000}})
    assert answer.status_code == 422 and pushed == [], answer.text[:300]
    fine = admin.post("/api/v1/devices/cam-3502/config", headers={"X-CSRF-Token": csrf},
                      json={"version": "v9", "camera": {"roi": [[1, 2], [3, 4]]}})
    assert fine.status_code == 200 and len(pushed) == 1, fine.text


def test_periods_stored_out_of_bounds_before_the_fix_are_repaired_and_audited(seeded):
    """A database that took a 10^12-day extension or a year-9999 start before the bounds: the migration
    cuts the one back and moves the other into the audit log, and the household pages answer again."""
    import json
    import sqlite3

    from gateway.migrations import MIGRATIONS, migrate
    from gateway.store import open_database

    version = [m.__name__ for m in MIGRATIONS].index("_012_bound_isolation_periods") + 1
    conn = sqlite3.connect(seeded.db_path)
    with conn:
        conn.execute("UPDATE isolation_periods SET days = ? WHERE household = 'hh-3-502'", (10**12,))
        conn.execute("UPDATE isolation_periods SET start_date = '9999-12-31' WHERE household = 'hh-9-301'")
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
    staff = TestClient(create_app(seeded.db_path), raise_server_exceptions=False)
    login(staff, "chen")
    assert staff.get("/api/v1/households/hh-3-502").status_code == 500  # what the attack left behind
    db = open_database(seeded.db_path)
    migrate(db)
    db.close()
    assert staff.get("/api/v1/households/hh-3-502").status_code == 200
    rows = dict(conn.execute("SELECT household, days FROM isolation_periods").fetchall())
    assert rows["hh-3-502"] == 365 and "hh-9-301" not in rows
    trail = conn.execute("SELECT action, object, detail FROM audit_log WHERE who = 'migration-012' ORDER BY id").fetchall()
    assert [(a, o) for a, o, _ in trail] == [("isolation.bounded", "hh-3-502"), ("isolation.removed", "hh-9-301")]
    assert json.loads(trail[0][2])["days"] == 10**12 and json.loads(trail[1][2])["start_date"] == "9999-12-31"
    conn.close()
