"""Past one machine: two gateway processes own disjoint sets of sites on one broker; each stores only
its own sites' messages, and together they store every message exactly once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from isowatch_app.simulate import Fleet, WirePublisher
from tests.support import wait_until

SHARDS = {"east": ("site-0", "site-1"), "west": ("site-2", "site-3")}


def start_gateway(broker_url: str, db, sites: tuple[str, ...], client_id: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "isowatch_app.cli", "gateway", "run", "--broker", broker_url, "--db", str(db),
            "--client-id", client_id]
    for site in sites:
        args += ["--site", site]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: "gateway running" in (process.stderr.readline().decode() or "x"), what=f"{client_id} start")
    return process


def stored(db) -> dict[str, str]:
    """id -> site of every event and reading in a gateway database."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return {row[0]: row[1] for table in ("events", "readings")
                for row in conn.execute(f"SELECT id, site FROM {table}")}
    finally:
        conn.close()


@pytest.mark.broker
@pytest.mark.slow
def test_two_gateways_store_only_their_sites_and_nothing_twice_or_lost(mosquitto, tmp_path):
    fleet = Fleet(households=40, sites=4)
    dbs = {name: tmp_path / f"{name}.db" for name in SHARDS}
    # Each shard and the load generator connect as users of their own: the broker names connections by user.
    gateways = {name: start_gateway(str(mosquitto.add_user(f"gw-{name}", full_access=True)), dbs[name], sites,
                                    f"isowatch-gateway-{name}")
                for name, sites in SHARDS.items()}
    try:
        publisher = WirePublisher(mosquitto.add_user("test-fleet", full_access=True), "test-fleet")
        sent: dict[str, str] = {}  # id -> site
        # "gateway running" comes before the broker's SUBACK: a message published in between reaches no
        # subscriber. Warm up until each shard has stored something; only what was stored counts as sent.
        def warmed_up() -> bool:
            for n in range(fleet.sites):
                publisher.publish(*fleet.door(n))
            publisher.flush(wait=True)
            time.sleep(0.2)
            return all(stored(db) for db in dbs.values())

        wait_until(warmed_up, what="each shard subscribed")
        time.sleep(1.0)  # the last warm-up round is stored too before we take what was stored as sent
        for db in dbs.values():
            sent.update(stored(db))
        for round_ in range(5):
            for n in range(fleet.households):
                for topic, payload in (fleet.door(n), fleet.temperature(n), fleet.heartbeat(n, 10.0 * round_)):
                    publisher.publish(topic, payload)
                    if not topic.endswith(b"/heartbeat"):
                        sent[json.loads(payload)["id"]] = fleet.site(n)
        publisher.close()

        wait_until(lambda: sum(len(stored(db)) for db in dbs.values()) >= len(sent), what="both shards to store")
        for process in gateways.values():  # a clean stop: anything still queued is stored before we look
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        shards = {name: stored(db) for name, db in dbs.items()}
    finally:
        for process in gateways.values():
            if process.poll() is None:
                process.kill()

    for name, rows in shards.items():
        assert set(rows.values()) <= set(SHARDS[name]), f"{name} stored another shard's sites"
        assert rows, f"{name} stored nothing"
    assert not shards["east"].keys() & shards["west"].keys(), "a message stored by both gateways"
    assert shards["east"].keys() | shards["west"].keys() == sent.keys(), "a message lost"
    for name, db in dbs.items():  # heartbeats land on the owning shard's devices table only
        conn = sqlite3.connect(db)
        sites = {row[0] for row in conn.execute("SELECT site FROM devices WHERE last_heartbeat IS NOT NULL")}
        conn.close()
        assert sites == set(SHARDS[name])
