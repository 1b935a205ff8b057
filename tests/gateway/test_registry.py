"""Registry: import from YAML and CSV with line-numbered errors, isolation periods and sign-off, the admin CLI,
the REST API, the policy file, and retention."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.routes.registry_api import RegistryDesk
from gateway.policy import PolicyError, load_policy, parse_policy
from gateway.registry import IsolationIn, Registry, RegistryError, isolation_day
from gateway.registry_import import ImportProblem, apply, parse_csv, parse_file, parse_yaml
from gateway.retention import purge
from gateway.store import open_database
from isowatch.clock import ManualClock
from isowatch_app.cli import cli
from tests.fixtures.world import FIXTURES

NOW = datetime(2026, 3, 5, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def registry(tmp_path) -> Registry:
    open_database(tmp_path / "gw.db").close()
    reg = Registry(sqlite3.connect(tmp_path / "gw.db"), ManualClock(NOW))
    apply(parse_yaml((FIXTURES / "registry.yaml").read_text().replace("{inbox}", "json://127.0.0.1:9/inbox")),
          reg, by="test")
    return reg


def test_yaml_import_errors_name_the_line_and_key():
    text = """\
staff:
  - {staff: a, name: A, role: leader}
  - staff: b
    name: B
    role: janitor
households:
  - {household: "bad id!", site: s}
  - {household: ok, site: s, residents: 0, pets: 2}
"""
    with pytest.raises(ImportProblem) as caught:
        parse_yaml(text, "people.yaml")
    problems = caught.value.problems
    assert any(p.startswith("people.yaml:3: staff[1].role:") for p in problems), problems
    assert any(p.startswith("people.yaml:7: households[0].household:") for p in problems), problems
    assert any(p.startswith("people.yaml:8: households[1].residents:") for p in problems), problems
    assert any(p.startswith("people.yaml:8: households[1].pets: Extra inputs") for p in problems), problems


def test_csv_import_loads_everything_and_errors_name_the_line(tmp_path):
    plan = parse_file(FIXTURES / "registry.csv")
    assert plan.counts() == {"sites": 1, "staff": 4, "teams": 1, "households": 1, "isolations": 1}
    assert plan.records["staff"][0][1].contacts == ["ntfy://ntfy.example.org/wu", "json://127.0.0.1:9/inbox/wu"]
    broken = "record,staff,name,role\nstaff,x,X,leader\nstaff,y,,medical\nvisitor,z,Z,leader\n"
    with pytest.raises(ImportProblem) as caught:
        parse_csv(broken, "staff.csv")
    assert caught.value.problems == [
        "staff.csv:3: staff.name: Field required",
        "staff.csv:4: record: unknown record 'visitor' (expected site, staff, team, household, isolation)",
    ]


def test_import_reports_references_to_missing_staff_with_the_line(registry):
    plan = parse_yaml("teams:\n  - {team: t, leader: nobody, medical: li-medical, police: zhao-police,"
                      " social: chen-social}\n", "teams.yaml")
    with pytest.raises(ImportProblem) as caught:
        apply(plan, registry, by="test", source="teams.yaml")
    assert caught.value.problems == ["teams.yaml:2: teams: no such staff member (leader): nobody"]


def test_admin_import_command(tmp_path):
    db = tmp_path / "gw.db"
    result = CliRunner().invoke(cli, ["admin", "import", str(FIXTURES / "registry.csv"), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "households=1" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("staff:\n  - {staff: q, name: Q, role: chef}\n")
    result = CliRunner().invoke(cli, ["admin", "import", str(bad), "--db", str(db)])
    assert result.exit_code == 1
    assert f"{bad}:2: staff[0].role:" in result.output
    audit = sqlite3.connect(db).execute("SELECT action, object FROM audit_log").fetchall()
    assert ("registry.import", str(FIXTURES / "registry.csv")) in audit


def test_isolation_day_extend_and_early_end_needs_medical_and_leader(registry):
    (period,) = registry.isolations("hh-3-502")
    assert isolation_day(period, NOW, "Asia/Shanghai") == 5
    # 23:30 UTC on 4 March is already 5 March in Shanghai.
    assert isolation_day(period, datetime(2026, 3, 4, 23, 30, tzinfo=timezone.utc), "Asia/Shanghai") == 5
    assert registry.extend_isolation(period.id, 7, by="wang-leader").days == 21
    with pytest.raises(RegistryError, match="neither the medical worker nor the team leader"):
        registry.sign_end(period.id, staff="chen-social")
    assert registry.sign_end(period.id, staff="li-medical", reason="negative tests").ended_at is None
    ended = registry.sign_end(period.id, staff="wang-leader", reason="negative tests")
    assert ended.ended_at == NOW
    assert registry.active_isolation("hh-3-502", NOW + timedelta(seconds=1)) is None
    row = registry.conn.execute("SELECT end_medical_by, end_leader_by FROM isolation_periods WHERE id = ?",
                                (period.id,)).fetchone()
    assert tuple(row) == ("li-medical", "wang-leader")
    actions = [r[0] for r in registry.conn.execute("SELECT action FROM audit_log WHERE object = 'hh-3-502'")]
    assert actions[-4:] == ["isolation.extend", "isolation.end_signoff", "isolation.end_signoff", "isolation.end"]


def test_policy_file_errors_name_the_key_path(tmp_path):
    with pytest.raises(PolicyError) as caught:
        parse_policy("kinds:\n  door_opened:\n    steps: [{notify: [janitor], wait_minutes: -1}]\nfoo: 1\n")
    text = str(caught.value)
    assert "kinds.door_opened.steps.0.notify.0" in text and "kinds.door_opened.steps.0.wait_minutes" in text
    assert "foo: Extra inputs are not permitted" in text
    with pytest.raises(PolicyError, match="no escalation steps for"):
        parse_policy("kinds: {door_opened: {steps: [{notify: [social]}]}}")
    toml = tmp_path / "policy.toml"
    kinds = "\n".join(f'[kinds.{k}]\nsteps = [{{notify = ["leader"], wait_minutes = 2}}]' for k in
                      load_policy().kinds)
    toml.write_text(f'timezone = "Asia/Urumqi"\n{kinds}\n')
    assert load_policy(toml).timezone == "Asia/Urumqi"
    result = CliRunner().invoke(cli, ["admin", "check-policy"])
    assert result.exit_code == 0 and "door_opened: social (5 min) -> leader (10 min)" in result.output


def test_registry_rest_api_requires_the_admin_token_and_does_the_same_operations(tmp_path):
    db = tmp_path / "gw.db"
    open_database(db).close()
    clock = ManualClock(NOW)
    client = TestClient(create_app(db, admin=RegistryDesk(db, clock, "s3cret")))
    assert client.put("/api/v1/registry/sites", json={"site": "s"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    response = client.post("/api/v1/registry/import?fmt=csv", content=(FIXTURES / "registry.csv").read_bytes(),
                           headers=auth)
    assert response.status_code == 200, response.text
    bad = client.post("/api/v1/registry/import", content=b"staff:\n  - {staff: q}\n", headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"]["problems"][0].startswith("upload.yaml:2:")
    device = client.post("/api/v1/registry/devices", json={"device": "cam-b1", "household": "hh-b-1"}, headers=auth)
    assert device.status_code == 201 and len(device.json()["password"]) > 16
    missing = client.post("/api/v1/registry/devices", json={"device": "cam-x", "household": "nope"}, headers=auth)
    assert missing.status_code == 404
    visit = client.post("/api/v1/registry/visits", headers=auth, json={
        "household": "hh-b-1", "kind": "rubbish", "starts_at": "2026-03-05T18:00:00+08:00",
        "ends_at": "2026-03-05T18:15:00+08:00"})
    assert visit.status_code == 201
    assert client.post("/api/v1/registry/isolations/1/extend", json={"days": 3}, headers=auth).json()["days"] == 17
    assert client.post("/api/v1/registry/isolations/1/end-signoff", json={"staff": "ma-social"},
                       headers=auth).status_code == 422
    # Without a token configured the API is off.
    assert TestClient(create_app(db)).put("/api/v1/registry/sites", json={"site": "s"}).status_code == 503


def test_purge_after_isolation_end_removes_readings_and_snapshots_and_audits(tmp_path):
    from gateway.inbox import LocalInbox
    from tests.fixtures.world import World

    with LocalInbox() as inbox:
        world = World(tmp_path, inbox)
        try:
            jpeg = b"\xff\xd8\xff\xe0" + b"x" * 64
            event = world.door()
            world.snapshot(event.id, jpeg)
            world.temperature(36.5)
            world.temperature(36.6, household="hh-7-101")
            world.worker.settle()
            (period,) = world.registry.isolations("hh-3-502")
            world.registry.sign_end(period.id, staff="li-medical")
            world.registry.sign_end(period.id, staff="wang-leader")
            path = world.store.snapshot_dir / world.rows("SELECT path FROM snapshots")[0][0]
            assert path.exists()
            world.clock.advance(29 * 86400)
            assert purge(world.conn, world.policy, world.clock.now(), world.store.snapshot_dir) == []
            world.clock.advance(86400)
            assert purge(world.conn, world.policy, world.clock.now(), world.store.snapshot_dir) == ["hh-3-502"]
            assert not path.exists()
            households = [r[0] for r in world.rows("SELECT household FROM readings")]
            assert "hh-3-502" not in households and "hh-7-101" in households  # the other household keeps its own
            (entry,) = world.rows("SELECT who, detail FROM audit_log WHERE action = 'retention.purge'")
            assert entry["who"] == "gateway" and '"snapshots": 1' in entry["detail"]
            assert world.rows("SELECT count(*) FROM events")[0][0] == 1  # events are kept for the record
        finally:
            world.close()


def test_isolation_input_is_validated(registry):
    with pytest.raises(RegistryError):
        registry.start_isolation(IsolationIn(household="nope", start_date=date(2026, 3, 1)), by="x")
    with pytest.raises(ValueError):
        IsolationIn(household="hh-3-502", start_date=date(2026, 3, 1), days=0)
    assert Path(FIXTURES / "registry.yaml").exists()
