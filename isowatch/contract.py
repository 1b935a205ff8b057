"""The MQTT wire contract: topics and payload models that the edge, the bridge and the gateway share.

Documented for firmware writers in docs/protocol.md; `isowatch protocol schema` prints the JSON Schema.
Only pydantic is needed here, so an edge box imports it without the gateway's dependencies.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
TOPIC_ROOT = "isowatch/v1"
MAX_JSON_BYTES = 64 * 1024
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024

IDENT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A UUIDv7 in canonical form: version 7, RFC 4122 variant; either case, stored lower-case.
_UUID7 = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$")


class TopicKind(StrEnum):
    EVENT = "event"  # device -> gateway, QoS 1: door and tamper events
    READING = "reading"  # device -> gateway, QoS 1: temperature and door-contact readings
    STATUS = "status"  # device -> gateway, retained: birth "online" and Last Will "offline"
    HEARTBEAT = "heartbeat"  # device -> gateway, QoS 1, every 30 s
    SNAPSHOT = "snapshot"  # device -> gateway, QoS 1: JPEG bytes on snapshot/{event_id}
    CONFIG = "config"  # gateway -> device, retained
    ACK = "ack"  # gateway -> device, QoS 0: which sequence numbers are stored


DEVICE_PUBLISHES = frozenset(
    {TopicKind.EVENT, TopicKind.READING, TopicKind.STATUS, TopicKind.HEARTBEAT, TopicKind.SNAPSHOT}
)


class ContractError(ValueError):
    """A message that breaks the contract. `reason` is a short stable code, counted by the gateway."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _to_utc(value: datetime) -> datetime:
    if not value.utcoffset():  # most devices send UTC already
        return value
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is a valid ISO 8601 text past datetime's last day in UTC
        raise PydanticCustomError("time_out_of_range", "time is outside what UTC dates can hold") from None


# Checked inside pydantic-core: Python validators here cost the gateway ~14 us per message.
Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN.pattern)]
EventId = Annotated[str, StringConstraints(to_lower=True, pattern=_UUID7.pattern)]
UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    household: str
    device: str
    kind: TopicKind
    event_id: str | None = None  # only for snapshot topics

    def __str__(self) -> str:
        return topic(self.site, self.household, self.device, self.kind, self.event_id)

    @classmethod
    def parse(cls, topic: str) -> "Topic":
        return _parse_topic(topic)

    @classmethod
    def _parse(cls, topic: str) -> "Topic":
        parts = topic.split("/")
        if len(parts) < 6 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
            raise ContractError("topic", f"not under {TOPIC_ROOT}/site/household/device/kind")
        site, household, device, kind_text = parts[2:6]
        for name, value in (("site", site), ("household", household), ("device", device)):
            if not IDENT_PATTERN.fullmatch(value):
                raise ContractError("topic", f"bad {name} segment")
        try:
            kind = TopicKind(kind_text)
        except ValueError:
            raise ContractError("topic", f"unknown kind {kind_text[:32]!r}") from None
        event_id = None
        if kind is TopicKind.SNAPSHOT:
            if len(parts) != 7:
                raise ContractError("topic", "snapshot topic needs snapshot/{event_id}")
            if not _UUID7.fullmatch(parts[6]):
                raise ContractError("topic", "snapshot event id is not a UUIDv7")
            event_id = parts[6].lower()
        elif len(parts) != 6:
            raise ContractError("topic", "too many segments")
        return cls(site, household, device, kind, event_id)


# A device uses a handful of topics over and over: the gateway parses each once.
# Topics are immutable; a bad topic raises and is not cached.
_parse_topic = functools.lru_cache(maxsize=1 << 18)(Topic._parse)


def topic(site: str, household: str, device: str, kind: TopicKind | str, event_id: str | None = None) -> str:
    base = f"{TOPIC_ROOT}/{site}/{household}/{device}/{TopicKind(kind).value}"
    return f"{base}/{event_id}" if event_id else base


def subscription(site: str, kind: TopicKind) -> str:
    """Subscription filter for one kind of message from one site ("+": every site)."""
    suffix = "/+" if kind is TopicKind.SNAPSHOT else ""
    return f"{TOPIC_ROOT}/{site}/+/+/{kind.value}{suffix}"


# Integers the store may hand to SQLite (a signed 64-bit column) without overflowing it.
MAX_INT = 2**63 - 1


class _Payload(BaseModel):
    # Finite floats only, in every model (a JSON `Infinity`, `NaN` or `1e400` is refused); `decode` also
    # validates strictly (no "39.5" for a number, no 1 for a boolean).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Envelope(_Payload):
    """Fields every device message carries."""

    schema_version: Literal[1] = Field(1, description="Contract version; bumped on incompatible change")
    id: EventId = Field(description="UUIDv7 made once at the source; the gateway deduplicates on it")
    device: Ident = Field(description="Device id; must equal the topic's device segment")
    seq: int = Field(ge=0, lt=2**63, description="The device's own counter, +1 per message; gaps show loss")
    device_time: UtcTime = Field(description="When it happened, device clock, ISO 8601 with offset")


class SnapshotMeta(_Payload):
    """A JPEG that travels separately on snapshot/{event_id}; matched by its hash."""

    role: Literal["opened", "widest"]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: int = Field(gt=0, le=MAX_SNAPSHOT_BYTES)
    width: int = Field(gt=0, le=10000)
    height: int = Field(gt=0, le=10000)
    taken_at: UtcTime


class DoorEvent(Envelope):
    """The door opened or closed, seen by the camera or a door contact."""

    type: Literal["door"]
    state: Literal["open", "closed"]
    source: Literal["camera", "contact"] = "camera"
    opening_id: EventId | None = Field(None, description="On 'closed': the id of the 'open' event it ends")
    duration_s: float | None = Field(None, ge=0, description="On 'closed': how long the door was open")
    exit_suspected: bool = Field(False, description="A person-sized region left through the doorway")
    snapshots: list[SnapshotMeta] = Field(default_factory=list, max_length=4)


class TamperEvent(Envelope):
    """The camera view became unusable (start) or usable again (end)."""

    type: Literal["tamper"]
    reason: Literal["covered", "defocus", "moved", "no_signal"]
    state: Literal["start", "end"]
    tamper_id: EventId | None = Field(None, description="On 'end': the id of the 'start' event it ends")


class TemperatureReading(Envelope):
    type: Literal["temperature"]
    celsius: float = Field(ge=-40, le=125, description="Sensor value; outside this range is a broken sensor")
    subject: Literal["body", "ambient"]
    method: Literal["oral", "axillary", "tympanic", "forehead", "rectal", "unknown"] | None = Field(
        None, description="How a body temperature was taken; null for ambient"
    )
    plausible: bool = Field(True, description="False for a body temperature outside 34-43 C")
    sensor: Ident | None = Field(None, description="Which sensor on the device, when it has several")
    battery_pct: float | None = Field(None, ge=0, le=100)


class ContactReading(Envelope):
    type: Literal["contact"]
    open: bool = Field(description="True when the magnet is away from the reed switch: door open")
    sensor: Ident | None = None
    battery_pct: float | None = Field(None, ge=0, le=100)


class Status(Envelope):
    """Retained: the birth message on connect and the Last Will on loss."""

    type: Literal["status"]
    state: Literal["online", "offline"]
    firmware: str = Field("", max_length=64)
    config_version: str | None = Field(None, max_length=64)
    config_error: str | None = Field(None, max_length=500, description="Why the last pushed config was refused")
    camera: Literal["ok", "tampered", "no_signal", "absent"] | None = None


class Heartbeat(Envelope):
    type: Literal["heartbeat"]
    uptime_s: float = Field(ge=0)
    outbox_depth: int = Field(0, ge=0, le=MAX_INT)
    outbox_dropped: int = Field(0, ge=0, le=MAX_INT, description="Messages dropped from a full outbox since start")
    config_version: str | None = Field(None, max_length=64)
    fps: float | None = Field(None, ge=0)
    cpu_temp_c: float | None = None
    flags: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")], Annotated[int, Field(ge=0)]] = (
        Field(default_factory=dict, max_length=16,
              description="Raised health flags, each with a count; see docs/operations.md"))


class GatewayAck(_Payload):
    """Gateway -> device: these sequence numbers are stored (inclusive ranges) and may leave the outbox."""

    schema_version: Literal[1] = 1
    device: Ident
    ranges: list[tuple[int, int]] = Field(max_length=10000)
    snapshots: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=list, max_length=1000, description="sha256 of snapshots now stored"
    )
    gateway_time: UtcTime


class DeviceConfig(_Payload):
    """Gateway -> device, retained on the config topic: settings the device applies live.

    `camera` holds overrides of the edge config's [camera] section (ROI, detector knobs); the device
    validates them against its own model and keeps its running config when they are wrong.
    """

    schema_version: Literal[1] = 1
    version: str = Field(min_length=1, max_length=64, description="Reported back in status and heartbeat")
    device: Ident
    camera: dict[str, Any] = Field(default_factory=dict, description="Overrides of [camera]: roi, thresholds")
    heartbeat_s: float = Field(30.0, ge=5, le=3600)
    temperature_times: list[Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]] = Field(
        default_factory=lambda: ["08:00", "20:00"], max_length=24, description="Local times readings are due"
    )


EventPayload = Annotated[Union[DoorEvent, TamperEvent], Field(discriminator="type")]
ReadingPayload = Annotated[Union[TemperatureReading, ContactReading], Field(discriminator="type")]
DeviceMessage = Union[DoorEvent, TamperEvent, TemperatureReading, ContactReading, Status, Heartbeat]

_ADAPTERS: dict[TopicKind, TypeAdapter[Any]] = {
    TopicKind.EVENT: TypeAdapter(EventPayload),
    TopicKind.READING: TypeAdapter(ReadingPayload),
    TopicKind.STATUS: TypeAdapter(Status),
    TopicKind.HEARTBEAT: TypeAdapter(Heartbeat),
}

KIND_OF_TYPE: dict[str, TopicKind] = {
    "door": TopicKind.EVENT,
    "tamper": TopicKind.EVENT,
    "temperature": TopicKind.READING,
    "contact": TopicKind.READING,
    "status": TopicKind.STATUS,
    "heartbeat": TopicKind.HEARTBEAT,
}


def topic_for(site: str, household: str, message: DeviceMessage) -> str:
    return topic(site, household, message.device, KIND_OF_TYPE[message.type])


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def encode_ack(device: str, ranges: list[tuple[int, int]], snapshots: list[str], gateway_time: str) -> bytes:
    """The bytes of `encode(GatewayAck(...))` for an ack the gateway built itself from stored messages.

    The gateway sends one per device per batch; validating its own output through the model cost a tenth
    of its CPU at full load. `gateway_time` is already ISO 8601 UTC text (one per batch).
    tests/test_contract.py checks that both encodings agree and that the model accepts these bytes.
    """
    # Every value is digits, a hex digest or an identifier checked on the way in: nothing to escape.
    ranges_text = ",".join([f"[{first},{last}]" for first, last in ranges])
    snapshots_text = ",".join([f'"{digest}"' for digest in snapshots])
    return (f'{{"schema_version":{SCHEMA_VERSION},"device":"{device}","ranges":[{ranges_text}],'
            f'"snapshots":[{snapshots_text}],"gateway_time":"{gateway_time}"}}').encode()


# Reject reasons for pydantic error types that deserve their own count; every other error is "schema".
_REASON_OF_ERROR = {"json_invalid": "json", "time_out_of_range": "time_out_of_range", "finite_number": "not_finite"}


def decode(topic_text: str | Topic, payload: bytes) -> tuple[Topic, DeviceMessage]:
    """Parse and check one JSON message from a device. Raises ContractError with a reason code, and nothing
    else whatever the bytes: the gateway stores or rejects every message, it never stops on one."""
    parsed = topic_text if isinstance(topic_text, Topic) else Topic.parse(topic_text)
    adapter = _ADAPTERS.get(parsed.kind)
    if adapter is None:
        raise ContractError("kind", f"{parsed.kind.value} is not a device JSON topic")
    if len(payload) > MAX_JSON_BYTES:
        raise ContractError("too_large", f"{len(payload)} bytes > {MAX_JSON_BYTES}")
    try:
        # Strict: JSON types as the schema says (no "39.5" for a number); ISO 8601 strings still parse.
        message = adapter.validate_json(payload, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = _REASON_OF_ERROR.get(first["type"], "schema")
        raise ContractError(reason, f"{where}: {first['msg']}"[:300]) from None
    except Exception as exc:  # a value no validator foresaw must not become the gateway's problem
        raise ContractError("invalid", f"{type(exc).__name__}: {exc}"[:300]) from None
    if message.device != parsed.device:
        raise ContractError("spoofed_device", f"topic device {parsed.device} != payload device")
    return parsed, message


def json_schema() -> dict[str, Any]:
    """One JSON Schema document describing every payload, keyed by topic kind."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"isowatch wire contract v{SCHEMA_VERSION}",
        "description": f"Topics: {TOPIC_ROOT}/{{site}}/{{household}}/{{device}}/{{kind}}. See docs/protocol.md.",
        "properties": {},
        "$defs": {},
    }
    adapters = dict(_ADAPTERS)
    adapters[TopicKind.ACK] = TypeAdapter(GatewayAck)
    adapters[TopicKind.CONFIG] = TypeAdapter(DeviceConfig)
    for kind, adapter in adapters.items():
        part = adapter.json_schema(ref_template="#/$defs/{model}")
        schema["$defs"].update(part.pop("$defs", {}))
        schema["properties"][kind.value] = part
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True)
