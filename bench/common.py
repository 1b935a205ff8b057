"""Shared by the benchmarks: machine description, medians, a gateway subprocess, a table printer."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from isowatch.broker import BrokerUrl


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def start_gateway(broker: BrokerUrl, db: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The gateway in its own process, as deployed: it must not share a GIL with the load it measures."""
    process = subprocess.Popen(
        [sys.executable, "-m", "isowatch_app.cli", "gateway", "run", "--broker", str(broker), "--db", str(db), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline().decode()
        if "gateway running" in line:
            # Keep reading its log: a full pipe would block the gateway's logging, and the figures with it.
            threading.Thread(target=_echo_problems, args=(process.stderr,), daemon=True).start()
            return process
        if not line and process.poll() is not None:
            break
    raise RuntimeError("gateway did not start")


def _echo_problems(stream: IO[bytes]) -> None:
    """Pass the gateway's warnings and errors on to our stderr, so a run's figures come with their causes."""
    for raw in stream:
        line = raw.decode(errors="replace")
        if " INFO " not in line and " DEBUG " not in line:
            sys.stderr.write("  gateway: " + line)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([title, line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (the gateway runs its alert worker as a child process)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            try:
                pids += [int(child) for child in task.read_text().split()]
            except OSError:
                pass  # a thread or child that just ended
        i += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its descendants have used so far (Linux /proc)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its descendants now, in MB (Linux /proc)."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def door_pages(inboxes: list, household_pattern: str, expected: int, timeout: float) -> dict[str, float]:
    """When the first 'Door opened' page for each household (matched in the body) reached a local inbox."""
    import re

    pattern = re.compile(household_pattern)
    arrived: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(arrived) < expected:
        for box in inboxes:
            for message in box.received():
                match = pattern.search(message.body)
                if match and "Door opened" in message.title:
                    arrived.setdefault(match.group(1), message.arrived)
        time.sleep(0.2)
    return arrived
