"""`isowatch bridge run` publishes through the edge outbox and courier: a reading the
firmware got an ACK for reaches the gateway exactly once, across a broker SIGKILL (which forgets what it
acknowledged since its last save) and a bridge restart while the broker is down."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge import line_protocol as lp
from firmware_bridge.simulator import SimulatedFirmware
from firmware_bridge.virtual_port import VirtualPort
from gateway.service import GatewayService
from isowatch.contract import TopicKind, subscription
from tests.support import query, stop_process, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEVICE = "bridge-1"


def start_bridge(port: Path, device_url, cwd: Path) -> subprocess.Popen:
    """The bridge as systemd runs it: its own process, its working directory holding the default outbox."""
    args = [sys.executable, "-m", "isowatch_app.cli", "bridge", "run", "--port", str(port), "--broker", str(device_url),
            "--site", "site-a", "--household", "hh-1", "--device", DEVICE]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def acknowledged(sim: SimulatedFirmware, frame: lp.Frame) -> None:
    """The firmware's view: the bridge ACKs a reading only once it has it in hand."""
    assert sim.send_until_acked(frame, timeout=60) is not None, f"bridge never acknowledged {frame}"


def stored(db: Path) -> list[tuple[str, float]]:
    return query(db, "SELECT id, celsius FROM readings WHERE device = ?", (DEVICE,))


def test_bridge_readings_survive_a_broker_kill_and_a_bridge_restart(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    GatewayService(db, mosquitto.url(), alerts=False).start().stop()  # the broker queues for it from now
    device_url = mosquitto.add_user(DEVICE)
    at_broker: queue.Queue[bytes] = queue.Queue()
    monitor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="monitor")
    operator = mosquitto.add_user("monitor", full_access=True)
    monitor.username_pw_set(operator.username, operator.password)
    subscribed = threading.Event()
    monitor.on_connect = lambda c, *_: c.subscribe(subscription("site-a", TopicKind.READING), qos=1)
    monitor.on_subscribe = lambda *_: subscribed.set()
    monitor.on_message = lambda c, u, msg: at_broker.put(msg.payload)
    monitor.connect("127.0.0.1", mosquitto.port)
    monitor.loop_start()
    assert subscribed.wait(15)
    workdir = tmp_path / "bridge"
    workdir.mkdir()
    bridge = None
    with VirtualPort(tmp_path / "usb-nano") as port, SimulatedFirmware(port) as sim:
        try:
            bridge = start_bridge(port.link, device_url, workdir)
            acknowledged(sim, lp.Hello(seq=0, ack=True, device_id="nano-7", firmware="0.9.1"))
            for n in range(10):
                acknowledged(sim, lp.BodyTemperature(seq=n + 1, ack=True, centi_c=3650 + n, method="oral"))
            received = [at_broker.get(timeout=30) for _ in range(10)]  # the broker has taken all ten
            assert len(received) == 10
            monitor.loop_stop()
            mosquitto.kill()  # nothing autosaved yet: the broker forgets the ten it acknowledged

            for n in range(10, 15):  # the broker is down: the bridge must keep them itself
                acknowledged(sim, lp.BodyTemperature(seq=n + 1, ack=True, centi_c=3650 + n, method="oral"))
            stop_process(bridge)  # and across its own restart
            bridge = start_bridge(port.link, device_url, workdir)

            mosquitto.start()
            gateway = GatewayService(db, mosquitto.url(), alerts=False).start()
            try:
                wait_until(lambda: len(stored(db)) >= 15, timeout=120, what="15 bridge readings at the gateway")
                gateway.ingest.wait_idle(quiet_s=1.0)
                rows = stored(db)
                assert len(rows) == 15 and len({row[0] for row in rows}) == 15
                assert sorted(celsius for _, celsius in rows) == [round(36.5 + n / 100, 2) for n in range(15)]
            finally:
                gateway.stop()
        finally:
            if bridge is not None:
                stop_process(bridge)
