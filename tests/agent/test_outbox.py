"""The outbox on its own: numbering that survives restarts, the drop policy, acknowledgement."""

from __future__ import annotations

from edge.outbox import Outbox
from isowatch.contract import DoorEvent, Heartbeat, TemperatureReading
from isowatch.stamper import Stamper


def door(stamper: Stamper):
    return lambda seq: stamper.make(DoorEvent, seq, type="door", state="open")


def beat(stamper: Stamper):
    return lambda seq: stamper.make(Heartbeat, seq, type="heartbeat", uptime_s=1)


def reading(stamper: Stamper):
    return lambda seq: stamper.make(TemperatureReading, seq, type="temperature", celsius=36.6, subject="body")


def test_sequence_numbers_continue_after_reopening(tmp_path):
    stamper = Stamper("cam-1")
    outbox = Outbox(tmp_path / "o.db")
    assert [m.seq for m in outbox.add_many([door(stamper)] * 3)] == [1, 2, 3]
    outbox.close()
    reopened = Outbox(tmp_path / "o.db")
    assert reopened.add(door(stamper)).seq == 4
    assert reopened.depth() == 4
    assert [p.seq for p in reopened.pending()] == [1, 2, 3, 4]


def test_acknowledged_rows_leave_and_others_stay(tmp_path):
    stamper = Stamper("cam-1")
    outbox = Outbox(tmp_path / "o.db")
    outbox.add_many([door(stamper)] * 10)
    digest = outbox.add_snapshot("0196a0b0-0000-7000-8000-000000000000", b"\xff\xd8\xffjpeg")
    assert outbox.acknowledge([(1, 3), (7, 7)], [digest]) == 5
    assert [p.seq for p in outbox.pending()] == [4, 5, 6, 8, 9, 10]
    assert outbox.depth() == 6
    assert outbox.acknowledge([(1, 3)]) == 0  # a repeated ack is harmless


def test_full_outbox_drops_heartbeats_then_readings_before_door_events(tmp_path):
    stamper = Stamper("cam-1")
    outbox = Outbox(tmp_path / "o.db", max_rows=6)
    outbox.add_many([door(stamper), beat(stamper), reading(stamper), beat(stamper), reading(stamper), door(stamper)])
    outbox.add(door(stamper))  # 7th row: the oldest heartbeat goes
    assert [p.seq for p in outbox.pending()] == [1, 3, 4, 5, 6, 7]
    outbox.add_many([door(stamper)] * 2)  # next the other heartbeat, then the oldest reading
    assert [p.seq for p in outbox.pending()] == [1, 5, 6, 7, 8, 9]
    outbox.add_many([door(stamper)] * 2)  # the last reading, then (only doors left) the oldest door event
    assert [p.seq for p in outbox.pending()] == [6, 7, 8, 9, 10, 11]
    assert outbox.dropped() == 5
    outbox.add(door(stamper))
    assert [p.seq for p in outbox.pending()] == [7, 8, 9, 10, 11, 12]
    assert outbox.dropped() == 6


def test_a_heartbeat_never_pushes_out_a_door_event(tmp_path):
    stamper = Stamper("cam-1")
    outbox = Outbox(tmp_path / "o.db", max_rows=2)
    outbox.add_many([door(stamper), door(stamper)])
    dropped_beat = outbox.add(beat(stamper))
    assert [p.seq for p in outbox.pending()] == [1, 2]
    assert dropped_beat.seq == 3 and outbox.dropped() == 1
    assert outbox.add(door(stamper)).seq == 4  # the gap at 3 shows the gateway a message was lost
