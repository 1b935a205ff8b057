"""The escalation policy and rule thresholds, loaded from YAML or TOML and validated once."""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.vocabulary import HELP_KINDS, AlertKind, Role
from isowatch.localtime import DEFAULT_ZONE

# Beside this module (package data): importlib.resources trips over setuptools' editable-install finder.
DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the key path of each problem."""


# Kinds older policy files do not name: these steps apply until the file routes them itself.
RESIDENT_KIND_DEFAULTS: dict[str, dict] = {
    "help_request": {"steps": [{"notify": ["social"], "wait_minutes": 15}, {"notify": ["leader"], "wait_minutes": 30}]},
    "visit_approval": {"steps": [{"notify": ["social"], "wait_minutes": 10}, {"notify": ["leader"], "wait_minutes": 15}]},
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Model):
    notify: list[Role] = Field(min_length=1, description="Roles of the household's team paged at this step")
    wait_minutes: float = Field(5, gt=0, le=24 * 60, description="Wait for an acknowledgement before the next step")


class KindPolicy(_Model):
    steps: list[Step] = Field(min_length=1)


class Renotify(_Model):
    """After the last step: page the last step's roles again every `every_minutes`, at most `max` times."""

    every_minutes: float = Field(10, gt=0, le=24 * 60)
    max: int = Field(3, ge=0, le=50)


class Snapshots(_Model):
    """What a device may upload: pictures count against a per-device quota over the last hour,
    and one that names an event not (yet) stored waits this long for it before retention purges it."""

    quota_mib_per_hour: float = Field(24, gt=0, le=4096, description="Snapshot bytes one device may store per hour")
    match_wait_minutes: float = Field(15, ge=1, le=24 * 60, description="How long a picture waits for its event")


class Rules(_Model):
    fever_celsius: float = Field(37.3, ge=35, le=42, description="Body temperature at or above this is a fever")
    fever_by_method: dict[str, float] = Field(
        default_factory=dict, description="Per measuring method (oral, rectal, ...): overrides fever_celsius"
    )
    repeat_count: int = Field(2, ge=2, le=100, description="This many door violations within the window: repeated")
    repeat_window_hours: float = Field(24, gt=0, le=24 * 14)
    opening_merge_s: float = Field(60, ge=0, le=3600, description="Openings closer than this count once")
    offline_after_s: float = Field(90, ge=10, le=24 * 3600, description="No message from a device for this long")
    readings_expected_at: list[time] = Field(
        default_factory=lambda: [time(9, 0), time(21, 0)], min_length=1,
        description="Local times by which a body temperature is expected",
    )
    reading_grace_minutes: float = Field(60, ge=0, le=12 * 60)
    welfare_quiet_hours: float = Field(12, gt=0, le=7 * 24, description="No sign of life from a vulnerable household")
    disagree_window_s: float = Field(60, gt=0, le=3600, description="Camera and contact must agree within this")
    clock_skew_max_s: float = Field(
        300, gt=0, le=7 * 24 * 3600,
        description="A device clock further than this from the gateway's gets the clock_skew health flag")

    @field_validator("fever_by_method")
    @classmethod
    def _known_methods(cls, value: dict[str, float]) -> dict[str, float]:
        known = {"oral", "axillary", "tympanic", "forehead", "rectal", "unknown", "self_report"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown measuring method(s) {unknown}; known: {sorted(known)}")
        return value

    def fever_threshold(self, method: str | None) -> float:
        return self.fever_by_method.get(method or "unknown", self.fever_celsius)

    @property
    def lowest_fever(self) -> float:
        """The lowest threshold of any method: below it, no body temperature is a fever."""
        return min([self.fever_celsius, *self.fever_by_method.values()])


class Delivery(_Model):
    """How a page is delivered: retried while its alert is live, said loudly when it does not get through."""

    backoff_first_s: float = Field(5, gt=0, le=600, description="Wait after the first round of failed attempts")
    backoff_max_s: float = Field(180, gt=0, le=3600, description="Backoff doubles up to this cap, then stays")
    undelivered_after_s: float = Field(120, gt=0, le=24 * 3600,
                                       description="A page not delivered this long is reported (ERROR, audit, board)")
    timeout_s: float = Field(30, gt=0, le=300, description="Read timeout of one attempt, unless its URL sets rto=")
    unknown_hold_s: float = Field(60, ge=0, le=3600,
                                  description="After an attempt with no answer: wait this long before resending")


# Kinds that always page on their own: a person may be out of the door, ill or asking for help, and a
# storm of other alerts must never delay or swallow that page.
NEVER_GROUPED = frozenset({AlertKind.DOOR_OPENED, AlertKind.REPEATED_DOOR, AlertKind.FEVER, AlertKind.WELFARE_CHECK,
                           AlertKind.HELP_REQUEST, AlertKind.VISIT_APPROVAL})


class Grouping(_Model):
    """Alerts of one kind starting close together for one team page as one group (docs/alerts.md, "Storms")."""

    kinds: list[AlertKind] = Field(
        default_factory=lambda: [AlertKind.DEVICE_OFFLINE, AlertKind.CAMERA_TAMPERED, AlertKind.MISSED_READING],
        description="Kinds that may group; door openings, fevers, welfare checks and households' requests never do")
    window_s: float = Field(300, gt=0, le=24 * 3600,
                            description="How close (opened) an alert must be to the group's latest member to join it")
    threshold: int = Field(2, ge=2, le=10_000,
                           description="Alerts of one kind for one team within the window that make a group")
    hold_s: float = Field(0, ge=0, le=600,
                          description="A groupable alert waits this long for others before its first page")

    @field_validator("kinds")
    @classmethod
    def _never_urgent(cls, value: list[AlertKind]) -> list[AlertKind]:
        urgent = sorted(k.value for k in set(value) & NEVER_GROUPED)
        if urgent:
            raise ValueError(f"{urgent} always page on their own and cannot be grouped")
        return value

    def groups(self, kind: str) -> bool:
        return kind in self.kinds


class Resident(_Model):
    """What a household may do through its resident link (docs/residents.md)."""

    announce_max_minutes: int = Field(30, ge=1, le=30, description="Longest announced opening, in minutes")
    announcements_per_day: int = Field(4, ge=0, le=50, description="Announced openings per household and local day")
    actions_per_hour: int = Field(20, ge=1, le=1000, description="Actions of any kind per household and hour")
    open_requests: int = Field(5, ge=1, le=50, description="Help requests a household may have open at once")
    help_routes: dict[str, Role] = Field(
        default_factory=lambda: {"supplies": Role.SOCIAL, "medicine": Role.MEDICAL, "symptoms": Role.MEDICAL,
                                 "mental_health": Role.SOCIAL, "other": Role.SOCIAL},
        description="Who a help request pages first, by what the household asks for; later steps as kinds.help_request")

    @field_validator("help_routes")
    @classmethod
    def _every_help_kind(cls, value: dict[str, Role]) -> dict[str, Role]:
        unknown = sorted(set(value) - set(HELP_KINDS))
        missing = sorted(set(HELP_KINDS) - set(value))
        if unknown or missing:
            raise ValueError(f"name each of {list(HELP_KINDS)} once (unknown: {unknown}, missing: {missing})")
        return value


class Policy(_Model):
    timezone: str = Field(DEFAULT_ZONE, description="Sites' default timezone (isolation days, expected times)")
    isolation_days: int = Field(14, ge=1, le=60)
    ack_link_ttl_hours: float = Field(24, gt=0, le=24 * 14)
    purge_after_days: int = Field(30, ge=0, le=3650, description="Snapshots and readings kept after isolation ends")
    renotify: Renotify = Renotify()
    snapshots: Snapshots = Snapshots()
    rules: Rules = Rules()
    delivery: Delivery = Delivery()
    resident: Resident = Resident()
    grouping: Grouping = Grouping()
    kinds: dict[AlertKind, KindPolicy]

    @model_validator(mode="before")
    @classmethod
    def _resident_kind_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("kinds"), dict):
            data = {**data, "kinds": {**RESIDENT_KIND_DEFAULTS, **data["kinds"]}}
        return data

    def escalation(self, kind: str, route: str | None = None) -> KindPolicy:
        """The steps of `kind`; an alert routed to one role (a help request) pages that role first."""
        steps = self.kinds[AlertKind(kind)]
        if not route:
            return steps
        first = steps.steps[0].model_copy(update={"notify": [Role(route)]})
        return steps.model_copy(update={"steps": [first, *steps.steps[1:]]})

    @model_validator(mode="after")
    def _every_kind_routed(self) -> "Policy":
        missing = [k.value for k in AlertKind if k not in self.kinds]
        if missing:
            raise ValueError(f"kinds: no escalation steps for {missing}")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown zone {self.timezone!r}") from None
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        lines.append(f"  {where}: {error['msg']} (got {error.get('input')!r})"[:300])
    return "\n".join(lines)


def parse_policy(text: str, *, fmt: str = "yaml", source: str = "policy") -> Policy:
    try:
        data: Any = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{source}: not valid {fmt.upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_format_errors(exc, source)) from None


def load_policy(path: Path | str | None = None) -> Policy:
    """The policy at `path` (.yaml, .yml or .toml), or the default that ships with the package."""
    if path is None:
        return parse_policy(DEFAULT_POLICY.read_text(), source="default_policy.yaml")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror}") from None
    return parse_policy(text, fmt="toml" if path.suffix == ".toml" else "yaml", source=str(path))
