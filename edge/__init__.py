"""Edge node: camera door detection, sensor inputs, outbox and MQTT uplink."""
