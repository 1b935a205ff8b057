"""The gateway is SIGKILLed mid-stream and restarted: every event is stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from edge.uplink import DeviceIdentity, Uplink
from isowatch.contract import DoorEvent
from tests.support import query, scalar, stop_process, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TOTAL = 2000


def start_gateway(broker_url: str, db_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "isowatch_app.cli", "gateway", "run", "--broker", broker_url, "--db", str(db_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigkill_mid_stream_then_restart_stores_each_event_once(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    gateway = start_gateway(str(mosquitto.url()), db)
    wait_until(lambda: "gateway running" in (gateway.stderr.readline().decode() or "x"), what="gateway start")

    uplink = Uplink(mosquitto.add_user("cam-1"), DeviceIdentity("site-a", "hh-1", "cam-1")).start()
    sent = []

    def publish() -> None:
        for n in range(TOTAL):
            message = uplink.stamp(DoorEvent, type="door", state="open" if n % 2 == 0 else "closed")
            uplink.send(message).wait_for_publish(10)  # PUBACK from the broker: it holds the message
            sent.append(message.id)
            if n % 100 == 0:
                time.sleep(0.05)  # a stream, not one burst, so the kill lands in the middle

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        wait_until(lambda: scalar(db, "SELECT count(*) FROM events") >= TOTAL // 4, what="a quarter stored")
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        killed_at = scalar(db, "SELECT count(*) FROM events")
        assert killed_at < TOTAL, "the kill must land mid-stream"
        publisher.join(60)
        assert len(sent) == TOTAL

        gateway = start_gateway(str(mosquitto.url()), db)
        wait_until(lambda: scalar(db, "SELECT count(*) FROM events") >= TOTAL, timeout=60, what="all events stored")
        time.sleep(1.0)  # anything redelivered late would show up as an extra row now
        rows = query(db, "SELECT id, count(*) FROM events GROUP BY id")
        assert len(rows) == TOTAL
        assert {r[0] for r in rows} == set(sent)
        assert scalar(db, "SELECT count(*) FROM events") == TOTAL
        seqs = [s for (s,) in query(db, "SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(seqs[0], seqs[0] + TOTAL))
    finally:
        uplink.stop()
        stop_process(gateway)
