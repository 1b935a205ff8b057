"""Device clocks are not trusted: through the real broker and gateway.

A box without a real-time clock boots in 1970 until NTP answers; a broken or hostile one may date its
messages years ahead. The gateway decides by its own receive time, keeps the device's time for display,
records the skew and flags it, and the device's events still page.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.deps import Scope
from dashboard.household_view import summaries
from edge.uplink import DeviceIdentity, Uplink
from gateway import alerts
from gateway.inbox import LocalInbox
from gateway.policy import Policy, load_policy
from gateway.service import GatewayService
from isowatch.clock import ManualClock
from isowatch.contract import DoorEvent, Heartbeat, TemperatureReading
from isowatch.stamper import Stamper
from tests.gateway.test_alerts_e2e import seed_registry
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker

BOOT_1970 = datetime(1970, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
YEAR_2099 = datetime(2099, 6, 1, tzinfo=timezone.utc)


def policy(**rules: float) -> Policy:
    base = load_policy()
    return base.model_copy(update={"rules": base.rules.model_copy(update=rules)})


class Gateway:
    """A real gateway (alert worker scanning every half second) with the test registry: hh-3-502 and the
    elderly resident living alone at hh-7-101, whose team's social worker is chen-social."""

    def __init__(self, mosquitto, tmp_path, inbox: LocalInbox, rules: Policy) -> None:
        self.db = tmp_path / "gw.db"
        self.mosquitto = mosquitto
        self.service = GatewayService(self.db, mosquitto.url(), policy=rules, worker_options={"scan_every_s": 0.5})
        registry = seed_registry(self.db, inbox)
        self.passwords = {device: registry.register_device(device, household, by="test")
                          for device, household in (("cam-3502", "hh-3-502"), ("cam-7101", "hh-7-101"))}
        registry.conn.close()
        self.service.start()
        self.uplinks: list[Uplink] = []

    def device(self, device: str, household: str, clock: ManualClock | None = None) -> Uplink:
        """A device on the wire whose messages carry `clock`'s time (the system clock without one)."""
        uplink = Uplink(self.mosquitto.add_user(device, self.passwords[device]),
                        DeviceIdentity("site-a", household, device), stamper=Stamper(device, clock))
        self.uplinks.append(uplink)
        return uplink.start()

    def close(self) -> None:
        for uplink in self.uplinks:
            uplink.stop()
        self.service.stop()


@pytest.fixture
def inbox():
    """The staff's phones: Apprise json:// URLs point at this local receiver."""
    with LocalInbox() as box:
        yield box


@pytest.fixture
def gateway_for(mosquitto, tmp_path, inbox):
    made: list[Gateway] = []

    def make(**rules: float) -> Gateway:
        made.append(Gateway(mosquitto, tmp_path, inbox, policy(**rules)))
        return made[-1]

    yield make
    for gateway in made:
        gateway.close()


def test_door_openings_dated_1970_or_400_days_ahead_page_and_flag_the_clock(gateway_for, inbox):
    gw = gateway_for()
    booting = gw.device("cam-3502", "hh-3-502", ManualClock(BOOT_1970))
    ahead = gw.device("cam-7101", "hh-7-101", ManualClock(datetime.now(timezone.utc) + timedelta(days=400)))
    booting.send(booting.stamp(DoorEvent, type="door", state="open"))
    ahead.send(ahead.stamp(DoorEvent, type="door", state="open"))

    door_pages = lambda: query(gw.db, "SELECT a.household, n.staff FROM notifications n JOIN alerts a "
                                      "ON a.id = n.alert_id WHERE a.kind = 'door_opened' AND n.state = 'sent'")
    pages = wait_until(lambda: len(door_pages()) >= 2 and door_pages(), timeout=30, what="both door pages sent")
    assert sorted(pages) == [("hh-3-502", "chen-social"), ("hh-7-101", "chen-social")]
    assert sum("隔离期间开门" in m.title and m.recipient == "chen-social" for m in inbox.received()) == 2
    assert sorted(query(gw.db, "SELECT household, outcome, kind FROM rule_log")) == [
        ("hh-3-502", "alert", "door_opened"), ("hh-7-101", "alert", "door_opened")]
    # The device's time is kept for display and forensics; the skew is recorded and flagged.
    assert scalar(gw.db, "SELECT device_time FROM events WHERE device = 'cam-3502'").startswith("1970-01-01")
    wait_until(lambda: scalar(gw.db, "SELECT count(*) FROM devices WHERE clock_skew = 1") == 2, timeout=30,
               what="both devices flagged clock_skew")
    skews = dict(query(gw.db, "SELECT device, clock_skew_s FROM devices"))
    assert skews["cam-3502"] < -50 * 365 * 86400 and 399 * 86400 < skews["cam-7101"] < 401 * 86400


@pytest.mark.parametrize("device_time", [datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
                                         datetime(1, 1, 1, tzinfo=timezone.utc)], ids=["year-9999", "year-1"])
def test_a_door_opening_at_the_calendars_end_pages_and_the_worker_lives_on(gateway_for, inbox, device_time):
    """The contract accepts any time it can represent in UTC: date arithmetic on such a time (skew,
    isolation day) must not kill the alert worker, or every page after it stops."""
    gw = gateway_for()
    odd = gw.device("cam-3502", "hh-3-502", ManualClock(device_time))
    honest = gw.device("cam-7101", "hh-7-101")
    odd.send(odd.stamp(DoorEvent, type="door", state="open"))
    wait_until(lambda: scalar(gw.db, "SELECT count(*) FROM alerts WHERE household = 'hh-3-502'") == 1,
               timeout=30, what="the odd device's opening raised its alert")
    honest.send(honest.stamp(DoorEvent, type="door", state="open"))  # the worker still pages after it
    wait_until(lambda: scalar(gw.db, "SELECT count(*) FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                                     "WHERE a.kind = 'door_opened' AND n.state = 'sent'") == 2,
               timeout=30, what="both door pages sent")
    wait_until(lambda: scalar(gw.db, "SELECT clock_skew FROM devices WHERE device = 'cam-3502'") == 1,
               timeout=30, what="the odd device flagged clock_skew")


def test_a_reading_dated_2099_neither_stays_the_latest_nor_silences_the_welfare_check(gateway_for, inbox):
    gw = gateway_for(welfare_quiet_hours=0.002)  # 7.2 s without a sign of life
    welfare = lambda: query(gw.db, "SELECT id, detail FROM alerts "
                                   "WHERE kind = 'welfare_check' AND household = 'hh-7-101' ORDER BY id")
    # Nothing heard from the elderly resident since the isolation began: the check fires once; it is resolved.
    ((first, _),) = wait_until(welfare, timeout=30, what="the first welfare check")
    conn = sqlite3.connect(gw.db, timeout=30)
    alerts.resolve(conn, first, staff="chen-social", verdict="resident_well", note="visited",
                   now=datetime.now(timezone.utc))
    conn.close()

    wrong = gw.device("cam-7101", "hh-7-101", ManualClock(YEAR_2099))
    wrong.send(wrong.stamp(TemperatureReading, type="temperature", celsius=36.6, subject="body", method="axillary"))
    received = wait_until(lambda: scalar(gw.db, "SELECT received_at FROM readings"), what="the 2099 reading stored")
    # Quiet again since that reading, as the gateway received it: the check fires again.
    found = wait_until(lambda: len(welfare()) == 2 and welfare(), timeout=60,
                       what="the welfare check after the reading")
    assert found[1][1] == f"no activity since {received}"
    wait_until(lambda: scalar(gw.db, "SELECT count(*) FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                                     "WHERE a.id = ? AND n.state = 'sent'", (found[1][0],)), what="its page sent")

    # A true reading after it is the last temperature, not the one dated 2099.
    honest = gw.device("cam-3502", "hh-3-502")
    honest.send(honest.stamp(TemperatureReading, type="temperature", celsius=36.6, subject="body", method="axillary"))
    wrong.stamper.clock._now = datetime.now(timezone.utc)  # NTP answered
    wrong.send(wrong.stamp(TemperatureReading, type="temperature", celsius=36.9, subject="body", method="axillary"))
    wait_until(lambda: scalar(gw.db, "SELECT count(*) FROM readings") == 3, what="the later readings")
    conn = sqlite3.connect(f"file:{gw.db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    shown = {s.household: s.temperature for s in summaries(conn, Scope(None, None), datetime.now(timezone.utc))}
    conn.close()
    assert shown["hh-7-101"] == 36.9


def test_a_future_heartbeat_or_status_does_not_freeze_the_device_row(gateway_for, inbox):
    gw = gateway_for()
    row = lambda columns: query(gw.db, f"SELECT {columns} FROM devices WHERE device = 'cam-3502'")[0]
    clock = ManualClock(YEAR_2099)
    device = gw.device("cam-3502", "hh-3-502", clock)  # its birth ("online") is dated 2099
    device.send(device.stamp(Heartbeat, type="heartbeat", uptime_s=1))
    wait_until(lambda: row("status, heartbeat IS NOT NULL") == ("online", 1), timeout=30,
               what="online, with the 2099 heartbeat")

    clock._now = datetime.now(timezone.utc)  # NTP answered
    device.send(device.stamp(Heartbeat, type="heartbeat", uptime_s=60))
    wait_until(lambda: '"uptime_s":60' in row("heartbeat")[0], timeout=30,
               what="the true heartbeat to replace the 2099 one")
    device.stop()  # a clean shutdown publishes "offline", dated now: older than the 2099 birth by the device's clock
    wait_until(lambda: row("status") == ("offline",), timeout=30, what="offline")
    beat_time, beat_device_time = row("last_heartbeat, heartbeat_device_time")
    assert beat_time < "2098" and beat_device_time < "2098"
    # The skew measured from the true messages, and the flag the 2099 ones raised is cleared.
    wait_until(lambda: row("clock_skew") == (0,), timeout=30, what="no clock_skew")
    assert abs(row("clock_skew_s")[0]) < 60
