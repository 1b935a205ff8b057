"""Load sites, staff, teams, households and isolation periods from YAML or CSV, with line-numbered errors.

YAML: top-level lists `sites`, `staff`, `teams`, `households`, `isolations`.
CSV: a `record` column (site, staff, team, household, isolation) and the fields as further columns;
empty cells are left out, `contacts` holds Apprise URLs separated by spaces.
The whole file is validated before anything is written, and written in dependency order.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.registry import HouseholdIn, IsolationIn, Registry, RegistryError, SiteIn, StaffIn, TeamIn

SECTIONS: dict[str, type[BaseModel]] = {
    "sites": SiteIn,
    "staff": StaffIn,
    "teams": TeamIn,
    "households": HouseholdIn,
    "isolations": IsolationIn,
}
CSV_RECORDS = {"site": "sites", "staff": "staff", "team": "teams", "household": "households",
               "isolation": "isolations"}


MAX_IMPORT_BYTES = 8 * 2**20  # far above any street office's registry; bounds what a file can make us hold


class ImportProblem(RegistryError):
    """Every problem in an import file, one `file:line: where: message` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportPlan:
    records: dict[str, list[tuple[int, BaseModel]]] = field(default_factory=lambda: {k: [] for k in SECTIONS})

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.records.items() if v}


class _LineLoader(yaml.SafeLoader):
    """Keeps the line of every mapping, so an error names the line of the record it is in."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _validate(plan: ImportPlan, section: str, line: int, data: dict[str, Any], source: str,
              problems: list[str], where: str) -> None:
    try:
        plan.records[section].append((line, SECTIONS[section].model_validate(data)))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            key = ".".join(str(p) for p in error["loc"]) or "(record)"
            problems.append(f"{source}:{line}: {where}.{key}: {error['msg']}")


def decode_upload(raw: bytes, source: str) -> str:
    """The file's text: UTF-8 (a spreadsheet's BOM dropped), or a problem naming where it is not."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise ImportProblem([f"{source}: larger than {MAX_IMPORT_BYTES // 2**20} MiB"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportProblem([f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"]) from None


def _refuse_aliases(text: str, source: str) -> None:
    """YAML anchors and aliases can expand a small file into a huge one ("billion laughs"); a registry needs none."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1
                raise ImportProblem([f"{source}:{line}: YAML aliases (*name) are not accepted; write the value out"])
    except yaml.YAMLError:
        return  # reported with its line by the real load below


def parse_yaml(text: str, source: str = "<yaml>") -> ImportPlan:
    _refuse_aliases(text, source)
    try:
        data = yaml.load(text, Loader=_LineLoader)  # _LineLoader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ImportProblem([f"{source}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ImportProblem([f"{source}:1: expected a mapping with {', '.join(SECTIONS)}"])
    top_line = data.pop("__line__", 1)
    plan, problems = ImportPlan(), []
    for section in data:
        if section not in SECTIONS:
            problems.append(f"{source}:{top_line}: {section}: unknown section (expected {', '.join(SECTIONS)})")
    for section in SECTIONS:
        items = data.get(section) or []
        if not isinstance(items, list):
            problems.append(f"{source}:{top_line}: {section}: expected a list")
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(f"{source}: {section}[{index}]: expected a mapping")
                continue
            line = item.pop("__line__", top_line)
            _validate(plan, section, line, item, source, problems, f"{section}[{index}]")
    return _checked(plan, problems, source)


def parse_csv(text: str, source: str = "<csv>") -> ImportPlan:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "record" not in reader.fieldnames:
        raise ImportProblem([f"{source}:1: the header needs a `record` column ({', '.join(CSV_RECORDS)})"])
    plan, problems = ImportPlan(), []
    for row in reader:
        line = reader.line_num
        kind = (row.pop("record") or "").strip()
        if None in row:
            problems.append(f"{source}:{line}: more cells than header columns")
            row.pop(None)
        section = CSV_RECORDS.get(kind)
        if section is None:
            problems.append(f"{source}:{line}: record: unknown record {kind!r} (expected {', '.join(CSV_RECORDS)})")
            continue
        data = {k.strip(): v.strip() for k, v in row.items() if v is not None and v.strip() != ""}
        _validate(plan, section, line, data, source, problems, kind)
    return _checked(plan, problems, source)


def _checked(plan: ImportPlan, problems: list[str], source: str) -> ImportPlan:
    for section, key in (("sites", "site"), ("staff", "staff"), ("teams", "team"), ("households", "household")):
        seen = Counter(getattr(model, key) for _, model in plan.records[section])
        for line, model in plan.records[section]:
            if seen[getattr(model, key)] > 1:
                problems.append(f"{source}:{line}: {section}.{key}: {getattr(model, key)!r} appears more than once")
    if problems:
        raise ImportProblem(problems)
    return plan


def parse_file(path: Path) -> ImportPlan:
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise ImportProblem([f"{path}: larger than {MAX_IMPORT_BYTES // 2**20} MiB"])
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportProblem([f"{path}: {exc.strerror}"]) from None
    text = decode_upload(raw, str(path))  # a BOM from spreadsheet exports is not part of the header
    if path.suffix.lower() == ".csv":
        return parse_csv(text, str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(text, str(path))
    raise ImportProblem([f"{path}: unknown file type (use .csv, .yaml or .yml)"])


def apply(plan: ImportPlan, registry: Registry, *, by: str, source: str = "import") -> dict[str, int]:
    """Write the plan in dependency order; a reference to a missing team or staff member names its line."""
    problems: list[str] = []
    for section in SECTIONS:
        for line, model in plan.records[section]:
            try:
                if section == "sites":
                    assert isinstance(model, SiteIn)
                    registry.upsert_site(model)
                elif section == "staff":
                    assert isinstance(model, StaffIn)
                    registry.upsert_staff(model)
                elif section == "teams":
                    assert isinstance(model, TeamIn)
                    registry.upsert_team(model)
                elif section == "households":
                    assert isinstance(model, HouseholdIn)
                    registry.upsert_household(model)
                else:
                    assert isinstance(model, IsolationIn)
                    registry.start_isolation(model, by=by)
            except (RegistryError, ValueError) as exc:
                problems.append(f"{source}:{line}: {section}: {exc}")
    with registry.conn:
        registry.audit(by, "registry.import", source, plan.counts())
    if problems:
        raise ImportProblem(problems)
    return plan.counts()
