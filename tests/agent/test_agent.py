"""The edge agent end to end over a real Mosquitto: camera clip -> detector -> outbox -> gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from edge.agent import EdgeAgent
from edge.config import EdgeConfigError, load_edge_config
from edge.outbox import Outbox
from edge.uplink import STATUS_SEQ
from gateway.device_config import push_device_config
from gateway.service import GatewayService
from isowatch.contract import DeviceConfig, TopicKind, encode, topic
from tests.agent.conftest import write_edge_config
from tests.support import query, scalar, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_clip_openings_arrive_at_the_gateway_with_snapshots(mosquitto, tmp_path, cycles_clip):
    clip, labels = cycles_clip
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url()).start()
    config = load_edge_config(write_edge_config(tmp_path / "edge.toml", mosquitto.add_user("cam-1"), clip, labels["roi"]))
    agent = EdgeAgent(config).start(wait_for_broker=10)
    try:
        agent.wait()  # the clip ends
        wait_until(lambda: agent.outbox.depth() == 0, what="outbox drained by gateway acks")
        states = [s for (s,) in query(db, "SELECT state FROM events WHERE type = 'door' ORDER BY seq")]
        assert states == ["open", "closed"] * len(labels["door_open"])
        closes = query(db, "SELECT payload FROM events WHERE state = 'closed'")
        opens = {i for (i,) in query(db, "SELECT id FROM events WHERE state = 'open'")}
        assert {json.loads(p)["opening_id"] for (p,) in closes} == opens
        assert scalar(db, "SELECT count(DISTINCT event_id) FROM snapshots") == 2 * len(labels["door_open"])
        device = query(db, "SELECT status, camera, heartbeat FROM devices WHERE device = 'cam-1'")[0]
        assert device[0] == "online" and device[1] == "ok" and json.loads(device[2])["uptime_s"] >= 0
    finally:
        agent.stop()
        gateway.stop()


def push_config(mosquitto, payload: bytes) -> None:
    """Raw bytes, as a broken or hostile publisher would send them."""
    import paho.mqtt.publish as publish

    gw = mosquitto.add_user("operator", full_access=True)  # not the gateway's user: that would take over its session
    publish.single(topic("site-a", "hh-1", "cam-1", TopicKind.CONFIG), payload, qos=1, retain=True,
                   hostname=gw.host, port=gw.port, auth={"username": gw.username, "password": gw.password})


def test_remote_config_is_applied_and_a_bad_one_is_refused(mosquitto, tmp_path, cycles_clip):
    clip, labels = cycles_clip
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url()).start()
    config = load_edge_config(write_edge_config(tmp_path / "edge.toml", mosquitto.add_user("cam-1"), clip,
                                                labels["roi"], loop=True))
    agent = EdgeAgent(config).start(wait_for_broker=10)
    status = lambda: query(db, "SELECT config_version FROM devices WHERE device = 'cam-1'")
    try:
        x, y, w, h = labels["roi"]
        good = DeviceConfig(version="v2", device="cam-1", camera={"roi": [x, y, w - 2, h], "open_confirm_s": 0.5})
        push_device_config(gateway.ingest.client, "site-a", "hh-1", good)  # as the dashboard does
        wait_until(lambda: status() and status()[0][0] == "v2", what="v2 reported")
        wait_until(lambda: agent.camera.camera.roi == (x, y, w - 2, h), what="ROI applied live")

        for bad in (b"{not json", encode(good)[:-1] + b',"heartbeat_s": "often"}',
                    json.dumps({**json.loads(encode(good)), "version": "v3", "camera": {"roi": "abc"}}).encode(),
                    json.dumps({**json.loads(encode(good)), "version": "v4", "camera": {"colour": 1}}).encode()):
            before = agent.config_error
            push_config(mosquitto, bad)
            wait_until(lambda: agent.config_error and agent.config_error != before, what="refusal")
            assert agent.config_version == "v2"
            assert agent.camera.camera.roi == (x, y, w - 2, h)
        wait_until(lambda: query(db, "SELECT config_error FROM devices WHERE device='cam-1'")[0][0], what="error reported")
    finally:
        agent.stop()
        gateway.stop()


def test_check_config_lists_every_problem(tmp_path):
    bad = tmp_path / "edge.toml"
    bad.write_text('[device]\nsite = "a b"\nhousehold = "h"\n\n[uplink]\nbroker = "http://x"\n\n[outbox]\nmax_rows = -1\n')
    with pytest.raises(EdgeConfigError) as info:
        load_edge_config(bad)
    text = str(info.value)
    for where in ("device.site", "device.id", "uplink", "outbox.max_rows"):
        assert where in text
    result = subprocess.run([sys.executable, "-m", "isowatch_app.cli", "edge", "check-config", "--config", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "device.id" in result.stderr


def test_edge_sigkilled_while_publishing_loses_nothing_and_duplicates_nothing(mosquitto, tmp_path, cycles_clip):
    clip, labels = cycles_clip
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url()).start()
    handled: list[int] = []  # the numbered messages the gateway told cam-1 it may forget
    gateway.ingest.listeners.append(lambda summary: handled.extend(
        seq for lo, hi in summary.acked.get("cam-1", ()) for seq in range(lo, hi + 1) if seq != STATUS_SEQ))
    config_path = write_edge_config(tmp_path / "edge.toml", mosquitto.add_user("cam-1"), clip, labels["roi"],
                                    loop=True, heartbeat_s=1, resend_after_s=2)
    command = [sys.executable, "-m", "isowatch_app.cli", "edge", "run", "--config", str(config_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    edge = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: scalar(db, "SELECT count(*) FROM events") >= 10, timeout=60, what="events flowing")
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        edge = subprocess.Popen([*command, "--for", "4"], env=env, stderr=subprocess.DEVNULL)
        assert edge.wait(60) == 0
        outbox = Outbox(tmp_path / "outbox.db")
        last_seq = outbox.next_seq() - 1
        if outbox.depth():  # the short second run may stop before every ack is back: finish the delivery
            edge = subprocess.Popen([*command, "--for", "6"], env=env, stderr=subprocess.DEVNULL)
            edge.wait(60)
            outbox = Outbox(tmp_path / "outbox.db")
            last_seq = outbox.next_seq() - 1
        wait_until(lambda: outbox.depth() == 0, timeout=30, what="everything acknowledged")
        gateway.ingest.wait_idle(quiet_s=0.5)
        assert set(handled) == set(range(1, last_seq + 1)), "every numbered message reached the gateway"
        ids = [i for (i,) in query(db, "SELECT id FROM events")]
        assert len(ids) == len(set(ids)) > 10
        assert scalar(db, "SELECT count(*) FROM events") == scalar(db, "SELECT count(DISTINCT seq) FROM events")
    finally:
        if edge.poll() is None:
            edge.kill()
        gateway.stop()


def test_camera_that_never_delivers_a_frame_is_reported_as_no_signal(mosquitto, tmp_path, cycles_clip):
    clip, labels = cycles_clip
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url()).start()
    path = write_edge_config(tmp_path / "edge.toml", mosquitto.add_user("cam-1"), tmp_path / "unplugged.mp4",
                             labels["roi"])
    path.write_text(path.read_text().replace("[capture]", "[capture]\nreconnect_max_s = 1").replace(
        "[camera]", "[camera]\nno_signal_after_s = 1"))
    agent = EdgeAgent(load_edge_config(path)).start(wait_for_broker=10)
    try:
        wait_until(lambda: query(db, "SELECT state FROM events WHERE type = 'tamper'"), what="no_signal tamper")
        payload = json.loads(query(db, "SELECT payload FROM events WHERE type = 'tamper'")[0][0])
        assert (payload["reason"], payload["state"]) == ("no_signal", "start")
        wait_until(lambda: query(db, "SELECT camera FROM devices WHERE device = 'cam-1'")[0][0] == "no_signal",
                   timeout=10, what="retained status shows camera=no_signal")
    finally:
        agent.stop()
        gateway.stop()


def test_serial_thermometer_readings_flow_through_the_agent(mosquitto, tmp_path, cycles_clip):
    from firmware_bridge.simulator import SimulatedFirmware
    from firmware_bridge.virtual_port import VirtualPort

    clip, labels = cycles_clip
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url()).start()
    path = write_edge_config(tmp_path / "edge.toml", mosquitto.add_user("cam-1"), clip, labels["roi"])
    text = path.read_text()
    camera_part = text[text.index("[camera]"):text.index("[heartbeat]")]
    path.write_text(text.replace(camera_part, "") + f'\n[[sensors]]\ntype = "line"\nport = "{tmp_path / "thermo"}"\n')
    with VirtualPort(tmp_path / "thermo") as port, SimulatedFirmware(port, device_id="thermo-1") as firmware:
        agent = EdgeAgent(load_edge_config(path)).start(wait_for_broker=10)
        try:
            firmware.boot()
            firmware.send_until_acked(firmware.body(3850, method="oral"))
            firmware.send_until_acked(firmware.body(4510, method="oral"))  # implausible, still forwarded
            wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") >= 2, what="readings stored")
            rows = query(db, "SELECT celsius, method, plausible FROM readings ORDER BY seq")
            assert rows == [(38.5, "oral", 1), (45.1, "oral", 0)]
        finally:
            agent.stop()
            gateway.stop()
