"""Faults between the edge outbox and the gateway, over a real Mosquitto: nothing lost, nothing twice."""

from __future__ import annotations

import time

import pytest

from edge.courier import Courier
from edge.outbox import Outbox
from edge.uplink import DeviceIdentity, Uplink
from gateway.service import GatewayService
from isowatch.contract import DoorEvent
from tests.support import query, scalar, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

IDENTITY = DeviceIdentity("site-a", "hh-1", "cam-1")


class Edge:
    """The edge's delivery path as the agent assembles it: outbox, uplink, courier."""

    def __init__(self, broker_url, outbox_path, resend_after_s: float = 20.0) -> None:
        self.outbox = Outbox(outbox_path)
        self.uplink = Uplink(broker_url, IDENTITY, reconnect_max_s=2)
        self.courier = Courier(self.outbox, self.uplink, resend_after_s=resend_after_s)

    def start(self, wait: float = 10.0) -> "Edge":
        self.uplink.start(wait=wait)
        self.courier.start()
        return self

    def door_event(self) -> DoorEvent:
        return self.outbox.add(lambda seq: self.uplink.stamper.make(DoorEvent, seq, type="door", state="open"))

    def stop(self) -> None:
        self.courier.stop(flush_timeout=0)
        self.uplink.stop()
        self.outbox.close()


def stored_seqs_in_arrival_order(db) -> list[int]:
    return [s for (s,) in query(db, "SELECT seq FROM events ORDER BY rowid")]


def test_broker_down_60s_while_500_events_happen(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url()).start()
    gateway.ingest.client.reconnect_delay_set(1, 2)
    edge = Edge(mosquitto.add_user("cam-1"), tmp_path / "outbox.db").start()
    try:
        mosquitto.stop()
        made = []
        started = time.monotonic()
        for n in range(500):  # spread over the outage
            made.append(edge.door_event().id)
            time.sleep(max(0.0, started + n * 0.115 - time.monotonic()))
        time.sleep(max(0.0, started + 60 - time.monotonic()))
        assert scalar(db, "SELECT count(*) FROM events") == 0
        assert edge.outbox.depth() == 500
        mosquitto.start()
        wait_until(lambda: scalar(db, "SELECT count(*) FROM events") >= 500, timeout=90, what="500 stored")
        wait_until(lambda: edge.outbox.depth() == 0, timeout=30, what="outbox drained by gateway acks")
        gateway.ingest.wait_idle(quiet_s=1.0)
        assert sorted(i for (i,) in query(db, "SELECT id FROM events")) == sorted(made)
        seqs = stored_seqs_in_arrival_order(db)
        assert seqs == sorted(seqs) and len(seqs) == 500
    finally:
        edge.stop()
        gateway.stop()


def test_broker_killed_after_puback_before_gateway_saw_anything(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    GatewayService(db, mosquitto.url()).start().stop()  # the gateway's session exists, then it goes away
    edge = Edge(mosquitto.add_user("cam-1"), tmp_path / "outbox.db", resend_after_s=2).start()
    try:
        made = [edge.door_event().id for _ in range(200)]
        wait_until(lambda: edge.courier.sent >= 200, what="200 published")
        time.sleep(1.0)  # the broker has PUBACKed them and queued them for the absent gateway
        mosquitto.kill()
        mosquitto.wipe()
        mosquitto.start()  # empty: no queue, no gateway session
        assert edge.outbox.depth() == 200
        gateway = GatewayService(db, mosquitto.url()).start()
        try:
            wait_until(lambda: scalar(db, "SELECT count(*) FROM events") >= 200, timeout=90, what="200 stored")
            wait_until(lambda: edge.outbox.depth() == 0, timeout=30, what="outbox drained")
            assert sorted(i for (i,) in query(db, "SELECT id FROM events")) == sorted(made)
        finally:
            gateway.stop()
    finally:
        edge.stop()


def test_gateway_acks_free_the_outbox_and_puback_alone_does_not(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    GatewayService(db, mosquitto.url()).start().stop()
    edge = Edge(mosquitto.add_user("cam-1"), tmp_path / "outbox.db").start()
    try:
        for _ in range(20):
            edge.door_event()
        wait_until(lambda: edge.courier.sent >= 20, what="published")
        time.sleep(0.5)
        assert edge.outbox.depth() == 20  # the broker has them; the gateway has not said so
        gateway = GatewayService(db, mosquitto.url()).start()
        try:
            wait_until(lambda: edge.outbox.depth() == 0, what="gateway acks")
            assert scalar(db, "SELECT count(*) FROM events") == 20
        finally:
            gateway.stop()
    finally:
        edge.stop()
