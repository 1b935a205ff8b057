"""`isowatch demo`: broker, gateway, dashboard and simulated households on one machine."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from pathlib import Path

import click

from edge.fleet import SimulatedHousehold, SimulationPace
from edge.uplink import DeviceIdentity
from gateway.service import GatewayService
from isowatch.broker import AmqttBroker, MosquittoBroker, start_embedded_broker

DEMO_SITE = "demo-street"
DEMO_PACE = SimulationPace(heartbeat_s=10.0, reading_s=(6.0, 12.0), door_gap_s=(5.0, 15.0), door_open_s=(2.0, 5.0))


def summary(service: GatewayService) -> dict[str, int]:
    counts = service.store.counts()
    return {
        "events_stored": counts["events"] + counts["readings"],
        "rejected": counts["rejects"],
        "alerts": 0,  # alerts arrive with the gateway alert issue
        "notifications_sent": 0,
    }


@click.command()
@click.option("--households", type=click.IntRange(1, 500), default=3, show_default=True,
              help="How many simulated households (each with its own edge node and credentials).")
@click.option("--for", "run_for", type=click.FloatRange(min=1), default=None,
              help="Run this many seconds, then stop cleanly; default until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Dashboard port (0: any free port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the database and broker files here; default a temporary directory.")
@click.option("--broker", "broker_choice", type=click.Choice(["auto", "mosquitto", "amqtt"]), default="auto",
              show_default=True, help="Which embedded broker: system Mosquitto when installed, else amqtt.")
def demo(households: int, run_for: float | None, port: int, data_dir: Path | None, broker_choice: str) -> None:
    """Run everything on this machine and print the dashboard URL.

    The last line printed is a JSON summary:
    {"events_stored": N, "rejected": N, "alerts": N, "notifications_sent": N}
    """
    with tempfile.TemporaryDirectory(prefix="isowatch-demo-") as tmp:
        root = data_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            broker = start_embedded_broker(root, prefer=broker_choice)
        except Exception as exc:
            raise click.ClickException(f"could not start a broker: {exc}") from None
        kind = "mosquitto" if isinstance(broker, MosquittoBroker) else "amqtt (demo only)"
        click.echo(f"broker: {kind} on 127.0.0.1:{broker.port}", err=True)
        service = GatewayService(root / "isowatch.db", broker.url(), http_port=port, http_host="127.0.0.1")
        fleet: list[SimulatedHousehold] = []
        try:
            service.start()
            click.echo(f"dashboard: http://127.0.0.1:{service.http_port}/", err=True)
            for n in range(1, households + 1):
                device = f"edge-{n:04d}"
                identity = DeviceIdentity(DEMO_SITE, f"hh-{n:04d}", device)
                fleet.append(SimulatedHousehold(broker.add_user(device), identity, DEMO_PACE, seed=n).start())
            click.echo(f"{households} simulated households publishing; "
                       + (f"stopping in {run_for:.0f} s" if run_for else "Ctrl-C to stop"), err=True)
            _wait(run_for)
        finally:
            for household in fleet:
                household.stop()
            service.ingest.wait_idle(quiet_s=0.5, timeout=15)
            result = summary(service)
            service.stop()
            broker.stop()
        click.echo(json.dumps(result))


def _wait(run_for: float | None) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(run_for) if run_for else _wait_forever(stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_forever(stop: threading.Event) -> None:
    while not stop.wait(1):
        time.sleep(0)
