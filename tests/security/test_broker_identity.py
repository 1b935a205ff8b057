"""Broker identity: a client id belongs to the broker user that authenticated.

Mosquitto's default lets any authenticated client take any client id, and a second connection with an id
already in use disconnects the first: a registered device could evict the gateway (or another device)
over and over, and wipe the gateway's persistent session with a clean-session connect. Every test here
plays the attacker with credentials of its own through the production Mosquitto config.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.uplink import DeviceIdentity, Uplink
from gateway.service import GatewayService
from isowatch.broker import BrokerUrl
from isowatch.contract import TemperatureReading
from isowatch_app.site import SiteService
from tests.support import scalar, wait_until

pytestmark = pytest.mark.broker

SITE = "site-a"


class Attacker:
    """A paho client with a device's credentials that claims someone else's client id."""

    def __init__(self, url: BrokerUrl, client_id: str, *, clean_session: bool = True) -> None:
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.client.username_pw_set(url.username, url.password)
        self.client.on_connect = self._on_connect
        self.client.connect_async(url.host, url.port, keepalive=30)
        self.client.reconnect_delay_set(1, 1)  # come back at once after every eviction, as the attack did
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
        else:
            self.connected.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def count_disconnects(client: mqtt.Client) -> list[object]:
    """Record every disconnect of `client` while keeping its own handler."""
    seen: list[object] = []
    original = client.on_disconnect

    def on_disconnect(*args: object) -> None:
        seen.append(args[3])
        if original is not None:
            original(*args)

    client.on_disconnect = on_disconnect
    return seen


def reading(uplink: Uplink, celsius: float) -> TemperatureReading:
    return uplink.stamp(TemperatureReading, type="temperature", celsius=celsius, subject="ambient")


# The gateway's id as the service sends it, and as Mosquitto names it (its user).
@pytest.mark.parametrize("claimed", ["isowatch-gateway", "gateway"])
def test_a_device_with_the_gateways_client_id_cannot_evict_it(mosquitto, tmp_path, claimed):
    db = tmp_path / "gw.db"
    service = GatewayService(db, mosquitto.url(), alerts=False).start()
    gateway_disconnects = count_disconnects(service.ingest.client)
    honest = Uplink(mosquitto.add_user("cam-honest"), DeviceIdentity(SITE, "hh-1", "cam-honest")).start()
    attacker = Attacker(mosquitto.add_user("cam-evil"), claimed)
    try:
        assert attacker.connected.wait(15), f"attacker not connected: {attacker.refused}"
        for n in range(20):
            honest.send(reading(honest, 20 + n / 10))
        wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 20, what="20 readings stored")
        # The attacker's client reconnects every second when kicked: give it rounds to keep trying.
        wait_until(lambda: attacker.client.is_connected(), what="attacker still connected as itself")
        assert gateway_disconnects == []
        assert service.ingest.client.is_connected()
    finally:
        attacker.stop()
        honest.stop()
        service.stop()


def test_a_clean_session_under_the_gateways_id_does_not_wipe_its_queue(mosquitto, tmp_path):
    """Readings queued for a stopped gateway survive a device connecting as `isowatch-gateway`."""
    db = tmp_path / "gw.db"
    GatewayService(db, mosquitto.url(), alerts=False).start().stop()  # the persistent session exists
    honest = Uplink(mosquitto.add_user("cam-honest"), DeviceIdentity(SITE, "hh-1", "cam-honest")).start()
    attacker = None
    try:
        infos = [honest.send(reading(honest, 20 + n / 10)) for n in range(30)]
        for info in infos:
            info.wait_for_publish(15)  # in the broker, queued for the gateway's session
        attacker = Attacker(mosquitto.add_user("cam-evil"), "isowatch-gateway", clean_session=True)
        assert attacker.connected.wait(15), f"attacker not connected: {attacker.refused}"
        attacker.stop()
        service = GatewayService(db, mosquitto.url(), alerts=False).start()
        try:
            wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 30, what="30 queued readings stored")
        finally:
            service.stop()
    finally:
        if attacker is not None:
            attacker.stop()
        honest.stop()


# The id the uplink sends (its user name) and the one it used to send.
@pytest.mark.parametrize("claimed", ["cam-victim", "edge-cam-victim"])
def test_a_device_with_another_devices_client_id_cannot_evict_it(mosquitto, tmp_path, claimed):
    db = tmp_path / "gw.db"
    service = GatewayService(db, mosquitto.url(), alerts=False).start()
    victim = Uplink(mosquitto.add_user("cam-victim"), DeviceIdentity(SITE, "hh-1", "cam-victim")).start()
    victim_disconnects = count_disconnects(victim.client)
    attacker = Attacker(mosquitto.add_user("cam-evil"), claimed)
    try:
        assert attacker.connected.wait(15), f"attacker not connected: {attacker.refused}"
        for n in range(20):
            victim.send(reading(victim, 20 + n / 10))
        wait_until(lambda: scalar(db, "SELECT count(*) FROM readings WHERE device = 'cam-victim'") == 20,
                   what="the victim's 20 readings stored")
        wait_until(lambda: attacker.client.is_connected(), what="attacker still connected as itself")
        assert victim_disconnects == []
        assert victim.connections == 1
    finally:
        attacker.stop()
        victim.stop()
        service.stop()


def test_the_dashboards_config_push_goes_over_the_gateways_own_connection(mosquitto, tmp_path):
    """A second connection with the gateway's user would take over (and, clean, wipe) the gateway's session."""
    from dashboard.routes.devices import config_pusher
    from isowatch.contract import DeviceConfig

    service = SiteService(tmp_path / "gw.db", mosquitto.url(), alerts=False, http_port=0).start()
    gateway_disconnects = count_disconnects(service.ingest.client)
    configs: list[bytes] = []
    device = Uplink(mosquitto.add_user("cam-cfg"), DeviceIdentity(SITE, "hh-1", "cam-cfg"),
                    on_config=configs.append).start()
    try:
        push = service._http_server.config.app.dependency_overrides[config_pusher]()  # what the route calls
        push(SITE, "hh-1", DeviceConfig(version="v2", device="cam-cfg"))
        wait_until(lambda: configs, what="the config at the device")
        assert b'"v2"' in configs[0]
        assert gateway_disconnects == []
    finally:
        device.stop()
        service.stop()


def test_push_config_refuses_the_gateways_user(mosquitto):
    from gateway.device_config import PushError, push_device_config
    from isowatch.contract import DeviceConfig

    with pytest.raises(PushError, match="gateway"):
        push_device_config(mosquitto.url(), SITE, "hh-1", DeviceConfig(version="v2", device="cam-cfg"))


def test_two_processes_sharing_a_devices_user_are_reported_not_silent(mosquitto, caplog):
    """Both connect as the device's user, so the broker keeps dropping the older: say so at ERROR."""
    url = mosquitto.add_user("cam-shared")
    first = Uplink(url, DeviceIdentity(SITE, "hh-1", "cam-shared"), reconnect_max_s=1).start()
    second = Uplink(url, DeviceIdentity(SITE, "hh-1", "cam-shared"), reconnect_max_s=1).start()
    try:
        wait_until(lambda: any(r.levelname == "ERROR" and "another process" in r.getMessage() for r in caplog.records),
                   what="an ERROR naming the shared broker user")
        assert max(first.short_connections, second.short_connections) >= 3
    finally:
        first.stop()
        second.stop()
