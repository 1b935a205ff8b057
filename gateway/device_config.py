"""Push a configuration to a device: retained on its config topic, so it also reaches a device that is offline now."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from isowatch.broker import GATEWAY_USER, BrokerUrl
from isowatch.contract import DeviceConfig, TopicKind, encode, topic


class PushError(RuntimeError):
    pass


def push_device_config(broker: BrokerUrl | mqtt.Client, site: str, household: str, config: DeviceConfig,
                       timeout: float = 10.0) -> None:
    """Publish QoS 1 retained and wait for the broker's PUBACK; the device reports the applied version back.

    A running gateway passes its own connected client: the broker names a connection by its user, so a
    second connection with the gateway's user would take over (and, clean, wipe) the gateway's session.
    A `BrokerUrl` connects for this one push with a user of its own (an operator's, docs/deployment.md).
    """
    if isinstance(broker, mqtt.Client):
        _publish(broker, site, household, config, timeout)
        return
    if broker.username == GATEWAY_USER:
        raise PushError(f"the broker user {GATEWAY_USER!r} is the gateway's: pushing with it would take over the "
                        "running gateway's session; push from the dashboard or with an operator user")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=broker.username or "", clean_session=True)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set()
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as exc:
        raise PushError(f"cannot reach {broker.redacted()}: {exc}") from None
    client.loop_start()
    try:
        _publish(client, site, household, config, timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _publish(client: mqtt.Client, site: str, household: str, config: DeviceConfig, timeout: float) -> None:
    info = client.publish(topic(site, household, config.device, TopicKind.CONFIG), encode(config), qos=1, retain=True)
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError) as exc:  # not connected now, or paho's queue is full
        raise PushError(f"config not sent: {exc}") from None
    if not info.is_published():
        raise PushError(f"broker did not acknowledge the config within {timeout:.0f} s")
