"""Gateway: MQTT ingest, storage, registry, rules, alerts, escalation and notification."""
