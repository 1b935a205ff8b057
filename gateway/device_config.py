"""Push a configuration to a device: retained on its config topic, so it also reaches a device that is offline now."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from isowatch.broker import BrokerUrl
from isowatch.contract import DeviceConfig, TopicKind, encode, topic


class PushError(RuntimeError):
    pass


def push_device_config(broker: BrokerUrl, site: str, household: str, config: DeviceConfig, timeout: float = 10.0) -> None:
    """Publish QoS 1 retained and wait for the broker's PUBACK; the device reports the applied version back."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
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
        info = client.publish(topic(site, household, config.device, TopicKind.CONFIG), encode(config), qos=1,
                              retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise PushError(f"broker did not acknowledge the config within {timeout:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
