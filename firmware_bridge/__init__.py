"""Serial side: framed sensor lines from our firmware, Modbus RTU thermometers, Zigbee2MQTT sensors."""
