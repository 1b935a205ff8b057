"""One demo household: the real edge agent watching a looping generated door clip, with simulated
thermometer firmware on a pseudo-terminal as its serial sensor. Nothing scripted reaches the gateway:
door events come from the detector, readings from the serial line protocol."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.agent import EdgeAgent
from edge.camera_config import CameraConfig
from edge.config import CaptureSection, DeviceSection, EdgeConfig, HeartbeatSection, OutboxSection, UplinkSection
from edge.scenes import generate_clip
from firmware_bridge.sensors import LineSensor
from firmware_bridge.simulator import SimulatedFirmware, demo_readings
from firmware_bridge.virtual_port import VirtualPort
from isowatch.broker import BrokerUrl

# Each household's corridor: openings with passers-by, lights and someone leaving, in turn.
SCENARIOS = ("passer_and_open", "cycles", "lights_and_open", "exit", "full_open", "night_open")
CLIP_SECONDS = 40.0


class DemoHousehold:
    def __init__(self, root: Path, n: int, site: str, household: str, device: str, broker: BrokerUrl) -> None:
        self.root = root / household
        self.root.mkdir(parents=True, exist_ok=True)
        clip = self.root / "door.mp4"
        labels = generate_clip(clip, SCENARIOS[(n - 1) % len(SCENARIOS)], seed=n, width=320, height=240, fps=10,
                               seconds=CLIP_SECONDS)
        self.port = VirtualPort(self.root / "thermometer")
        self.firmware = SimulatedFirmware(self.port, device_id=f"{device}-thermo")
        config = EdgeConfig(
            device=DeviceSection(site=site, household=household, id=device),
            uplink=UplinkSection(broker=str(broker)),
            outbox=OutboxSection(path=self.root / "outbox.db"),
            camera=CameraConfig(roi=tuple(labels["roi"])),
            capture=CaptureSection(source=str(clip), loop=True, realtime=True),
            heartbeat=HeartbeatSection(interval_s=10),
            sensors=[LineSensor(type="line", port=str(self.port.link))],
        )
        self.agent = EdgeAgent(config)
        self._stop = threading.Event()
        self._readings = threading.Thread(target=demo_readings, args=(self.firmware, 8.0, self._stop),
                                          name=f"thermometer-{household}", daemon=True)

    def start(self) -> "DemoHousehold":
        self.port.plug()
        self.firmware.start()
        self._readings.start()
        self.agent.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.agent.stop(flush_timeout=3)
        self._readings.join(5)
        self.firmware.stop()
        self.port.unplug()
