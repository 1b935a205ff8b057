"""Event log keyset paging and filters, and the response report's figures, on a real migrated database."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import event_log, response_report
from dashboard.deps import Scope
from dashboard.event_log import LogFilter
from gateway.store import open_database
from isowatch.clock import iso

ALL = Scope(None, None)
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
BOOT = datetime(1970, 1, 1, tzinfo=timezone.utc)  # a box without a real-time clock, before NTP


@pytest.fixture(scope="module")
def log_db(tmp_path_factory):
    """300 events and 100 readings over 3 households and 2 sites; many share a receive time (ties). Every
    device clock is stuck in 1970: the log goes by the gateway's receive time."""
    path = tmp_path_factory.mktemp("log") / "gw.db"
    db = open_database(path)
    with db.conn:
        for n in range(300):
            hh = f"hh-{n % 3}"
            db.conn.execute(
                "INSERT INTO events (id, site, household, device, seq, type, device_time, received_at, state, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                (f"e{n:04d}", f"site-{n % 2}", hh, f"cam-{n % 3}", n, "door" if n % 4 else "tamper",
                 iso(BOOT), iso(T0 + timedelta(minutes=n // 3)), "open"))
        for n in range(100):
            db.conn.execute(
                "INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, celsius, "
                "subject, method, plausible, payload) VALUES (?, 'site-0', 'hh-0', 'cam-0', ?, 'temperature', ?, ?, "
                "36.6, 'body', 'axillary', 1, '{}')", (f"r{n:04d}", n, iso(BOOT), iso(T0 + timedelta(minutes=n))))
        db.conn.execute("INSERT INTO alerts (id, site, household, kind, state, opened_at, verdict) "
                        "VALUES (1, 'site-0', 'hh-0', 'door_opened', 'resolved', ?, 'false_alarm')", (iso(T0),))
        for ref in ("e0000", "e0006", "e0012"):
            db.conn.execute("INSERT INTO alert_events (alert_id, ref, at) VALUES (1, ?, ?)", (ref, iso(T0)))
    db.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def walk(conn, f: LogFilter, scope: Scope = ALL, limit: int = 7) -> list[str]:
    ids, before = [], None
    while True:
        page = event_log.page(conn, f, scope, before=before, limit=limit)
        ids += [e.id for e in page.entries]
        if page.next_cursor is None:
            return ids
        before = page.next_cursor


def expected(conn, f: LogFilter, scope: Scope = ALL) -> list[str]:
    rows = conn.execute("SELECT id, site, household, type, received_at FROM events UNION ALL "
                        "SELECT id, site, household, type, received_at FROM readings").fetchall()
    linked = {r[0] for r in conn.execute("SELECT ref FROM alert_events ae JOIN alerts a ON a.id = ae.alert_id "
                                         "WHERE (? IS NULL OR a.verdict = ?) AND (? IS NULL OR a.kind = ?)",
                                         (f.verdict, f.verdict, f.alert_kind, f.alert_kind))}
    keep = [r for r in rows
            if (f.site is None or r["site"] == f.site) and (f.household is None or r["household"] == f.household)
            and (f.type is None or r["type"] == f.type) and scope.allows(r["household"])
            and (f.since is None or r["received_at"] >= iso(f.since)) and (f.until is None or r["received_at"] < iso(f.until))
            and ((f.verdict is None and f.alert_kind is None) or r["id"] in linked)]
    return [r["id"] for r in sorted(keep, key=lambda r: (r["received_at"], r["id"]), reverse=True)]


@settings(max_examples=60, deadline=None)
@given(site=st.sampled_from([None, "site-0", "site-1"]), household=st.sampled_from([None, "hh-0", "hh-1", "hh-2"]),
       type_=st.sampled_from([None, "door", "tamper", "temperature"]), start=st.integers(0, 120),
       length=st.one_of(st.none(), st.integers(0, 60)), verdict=st.sampled_from([None, "false_alarm"]),
       limit=st.integers(1, 40), scoped=st.booleans())
def test_keyset_pages_return_exactly_the_filtered_rows_once_newest_first(log_db, site, household, type_, start,
                                                                         length, verdict, limit, scoped):
    f = LogFilter(site=site, household=household, type=type_, since=T0 + timedelta(minutes=start),
                  until=None if length is None else T0 + timedelta(minutes=start + length), verdict=verdict)
    scope = Scope(("hh-0", "hh-2"), ("team",)) if scoped else ALL
    assert walk(log_db, f, scope, limit) == expected(log_db, f, scope)


def test_csv_export_has_every_filtered_row_and_the_alert_columns(log_db):
    f = LogFilter(verdict="false_alarm")
    text = "".join(event_log.export_csv(log_db, f, ALL, chunk=2))
    lines = text.splitlines()
    assert lines[0].split(",")[:3] == ["id", "site", "household"]
    assert [line.split(",")[0] for line in lines[1:]] == ["e0012", "e0006", "e0000"]
    assert all(",1,door_opened,false_alarm," in line for line in lines[1:])


def test_a_forged_cursor_is_refused(log_db):
    with pytest.raises(event_log.BadCursor):
        event_log.page(log_db, LogFilter(), ALL, before="not-a-cursor")


def test_percentile_is_nearest_rank():
    assert response_report.percentile([], 50) is None
    assert response_report.percentile([5.0], 90) == 5.0
    values = [float(v) for v in range(1, 11)]
    assert response_report.percentile(values, 50) == 5.0
    assert response_report.percentile(values, 90) == 9.0


def test_response_report_per_team_and_role(tmp_path):
    db = open_database(tmp_path / "gw.db")
    conn = db.conn
    with conn:
        conn.executemany("INSERT INTO staff (staff, name, role, language, contacts, active) VALUES (?, ?, ?, 'zh', '[]', 1)",
                         [("s1", "S1", "social"), ("l1", "L1", "leader"), ("m1", "M1", "medical"), ("p1", "P1", "police")])
        conn.execute("INSERT INTO teams VALUES ('t1', 'Team 1', 'l1', 'm1', 'p1', 's1')")
        conn.execute("INSERT INTO households (household, site, team) VALUES ('h1', 'x', 't1')")
        rows = [  # opened minutes, ack minutes after, acknowledged by, step, verdict
            (0, 2, "s1", 1, "false_alarm"), (10, 4, "s1", 1, "confirmed_violation"), (20, 12, "l1", 2, None),
            (30, None, None, 2, None), (40, 6, "s1", 1, "false_alarm")]
        for n, (opened, wait, by, step, verdict) in enumerate(rows, start=1):
            at = T0 + timedelta(minutes=opened)
            conn.execute("INSERT INTO alerts (id, site, household, kind, state, opened_at, acknowledged_at, "
                         "acknowledged_by, step, renotified, verdict, resolved_at) VALUES (?, 'x', 'h1', 'door_opened', 's', ?, ?, ?, ?, 0, ?, ?)",
                         (n, iso(at), iso(at + timedelta(minutes=wait)) if wait is not None else None, by, step, verdict,
                          iso(at + timedelta(hours=1)) if wait is not None else None))
            conn.execute("INSERT INTO notifications (alert_id, step, round, staff, role, state, created_at) "
                         "VALUES (?, 1, 0, 's1', 'social', 'sent', ?)", (n, iso(at)))
        conn.execute("INSERT INTO alerts (id, site, household, kind, state, opened_at) "
                     "VALUES (9, 'x', 'h1', 'fever', 'open', ?)", (iso(T0 - timedelta(days=30)),))  # outside the period
    conn.row_factory = sqlite3.Row  # as the dashboard's connections
    rep = response_report.report(conn, ALL, T0, T0 + timedelta(days=1))
    (team,) = rep.teams
    assert (team.team, team.alerts, team.acknowledged, team.unacknowledged, team.escalations) == ("t1", 5, 4, 1, 2)
    assert (team.ack_median_min, team.ack_p90_min) == (4.0, 12.0)
    assert (team.resolved, team.false_alarms, team.false_alarm_share) == (3, 2, round(2 / 3, 3))
    assert team.pages == 5
    roles = {r.role: r for r in rep.roles}
    assert (roles["social"].acknowledged, roles["social"].ack_median_min, roles["social"].pages) == (3, 4.0, 5)
    assert roles["social"].unacknowledged == 1  # paged on alert 4, which nobody acknowledged
    assert (roles["leader"].acknowledged, roles["leader"].ack_median_min, roles["leader"].escalations) == (1, 12.0, 1)
    csv_text = response_report.to_csv(rep)
    assert csv_text.splitlines()[1].startswith("team,t1,Team 1,5,4,4.0,12.0,2,1,3,2,")
    db.close()
