"""Two Zigbee sensors on one edge box: each one's readings reach the gateway, and no
connection of the box takes over another's at the broker."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import EdgeAgent
from edge.config import load_edge_config
from gateway.service import GatewayService
from isowatch.broker import MosquittoBroker, acl_text
from tests.support import query, wait_until

pytestmark = pytest.mark.broker

SENSORS = ("front door", "back door")


def zigbee_accounts(mosquitto: MosquittoBroker) -> tuple[str, str]:
    """Zigbee2MQTT's own user and the one the agent's Zigbee input reads with, both on zigbee2mqtt/#."""
    extra = "".join(f"user {user}\ntopic readwrite zigbee2mqtt/#\n" for user in ("zigbee2mqtt", "edge-zigbee"))
    mosquitto.acl_file.write_text(acl_text(mosquitto.full_access) + "\n" + extra)
    mosquitto.add_user("zigbee2mqtt")
    url = mosquitto.add_user("edge-zigbee")  # the SIGHUP rereads the ACL too
    return str(url), mosquitto.users["zigbee2mqtt"]


def write_config(tmp_path, device_url, zigbee_url: str):
    path = tmp_path / "edge.toml"
    sensors = "".join(f'\n[[sensors]]\ntype = "zigbee"\nbroker = "{zigbee_url}"\nfriendly_name = "{name}"\n'
                      for name in SENSORS)
    path.write_text(f"""
[device]
site = "site-a"
household = "hh-1"
id = "{device_url.username}"

[uplink]
broker = "mqtt://{device_url.host}:{device_url.port}"
password_file = "device.secret"
reconnect_max_s = 2

[outbox]
path = "outbox.db"
{sensors}""")
    (tmp_path / "device.secret").write_text(device_url.password + "\n")
    return load_edge_config(path)


def contact_readings(db, sensor: str) -> int:
    rows = query(db, "SELECT count(*) FROM readings WHERE type = 'contact' AND json_extract(payload, '$.sensor') = ?",
                 (sensor,))
    return rows[0][0] if rows else 0


def test_two_zigbee_sensors_on_one_box_deliver_every_reading_without_evicting(mosquitto, tmp_path):
    zigbee_url, z2m_password = zigbee_accounts(mosquitto)
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url(), alerts=False).start()
    agent = EdgeAgent(write_config(tmp_path, mosquitto.add_user("box-1"), zigbee_url)).start(wait_for_broker=10)
    z2m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="zigbee2mqtt")
    z2m.username_pw_set("zigbee2mqtt", z2m_password)
    z2m.connect("127.0.0.1", mosquitto.port)
    z2m.loop_start()
    ids = {name: name.replace(" ", "-") for name in SENSORS}
    state = {name: False for name in SENSORS}

    def toggle(name: str) -> None:
        state[name] = not state[name]  # a changed value is forwarded at once, never suppressed as a repeat
        z2m.publish(f"zigbee2mqtt/{name}", json.dumps({"contact": state[name], "battery": 90}), qos=1).wait_for_publish(10)

    try:
        # The input's subscriptions may still be in flight after start: toggle until each sensor is heard.
        for name in SENSORS:
            wait_until(lambda n=name: toggle(n) or threading.Event().wait(0.2) or contact_readings(db, ids[n]),
                       what=f"a first reading from {name}")
        before = {name: contact_readings(db, ids[name]) for name in SENSORS}
        for _ in range(25):
            for name in SENSORS:
                toggle(name)
        for name in SENSORS:
            wait_until(lambda n=name: contact_readings(db, ids[n]) >= before[n] + 25, what=f"25 readings from {name}")
        log = (mosquitto.data_dir / "mosquitto.log").read_text()
        assert "already connected, closing old connection" not in log
    finally:
        z2m.loop_stop()
        z2m.disconnect()
        agent.stop()
        gateway.stop()
