"""docs/serial-protocol.md cannot drift: its worked examples, CRC figures and C code are checked here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_bridge import line_protocol as lp
from firmware_bridge.errors import FrameError

DOC = Path(__file__).resolve().parents[2] / "docs" / "serial-protocol.md"
BLOCK = re.compile(r"```([\w-]+)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in BLOCK.findall(DOC.read_text())]


def examples() -> list[tuple[str, dict]]:
    found = blocks()
    pairs = []
    for i, (lang, body) in enumerate(found):
        if lang == "iw-frame":
            next_lang, next_body = found[i + 1]
            assert next_lang == "json", f"example {body.strip()} has no json block after it"
            pairs.append((body.strip(), json.loads(next_body)))
    return pairs


def test_the_document_has_worked_examples_of_every_frame_type_and_rejection() -> None:
    pairs = examples()
    types = {expected.get("type") for _, expected in pairs}
    assert types >= set(lp.FRAME_TYPES)
    rejected = {expected.get("rejected") for _, expected in pairs} - {None}
    assert rejected >= {"bad_checksum", "bad_value", "bad_field", "unknown_type"}


@pytest.mark.parametrize(("line", "expected"), examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_worked_example_decodes_as_documented(line: str, expected: dict) -> None:
    wire = line.encode() + b"\r\n"
    assert len(wire) <= lp.MAX_LINE
    if "rejected" in expected:
        with pytest.raises(FrameError) as caught:
            lp.parse_line(wire)
        assert caught.value.reason == expected["rejected"]
        return
    frame = lp.parse_line(wire)
    assert frame.as_dict() == expected
    assert lp.encode(frame) == wire  # the document shows the canonical encoding, checksum included


def test_the_documented_example_session_decodes_from_one_stream() -> None:
    stream = b"boot: rst cause 2\r\n" + b"".join(line.encode() + b"\r\n" for line, _ in examples())
    events = lp.LineDecoder().feed(stream)
    assert [e.as_dict() if isinstance(e, lp.Frame) else {"rejected": e.reason} for e in events] == [exp for _, exp in examples()]


def test_documented_crc_figures() -> None:
    text = DOC.read_text()
    assert "`123456789` is **29B1**" in text
    assert f"{lp.crc16_ccitt_false(b'123456789'):04X}" == "29B1"
    match = re.search(r"the body `([^`]+)` \((\d+) bytes\) has the CRC\s+\*\*([0-9A-F]{4})\*\*", text)
    assert match is not None
    body, size, crc = match.groups()
    assert len(body) == int(size)
    assert f"{lp.crc16_ccitt_false(body.encode()):04X}" == crc
    assert f"**{lp.MAX_LINE} bytes**" in text
    for method in lp.METHODS:
        assert f"`{method}`" in text


def test_the_c_reference_implementation_agrees_with_the_host(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler on this machine")
    (c_code,) = [body for lang, body in blocks() if lang == "c"]
    bodies = [line[1 : line.index("*")] for line, _ in examples()] + ["123456789"]
    harness = c_code + (
        "\nint main(int argc, char **argv) {\n"
        "    char out[160];\n"
        "    for (int i = 1; i < argc; i++) {\n"
        "        if (iw_frame(out, sizeof out, argv[i]) < 0) { printf(\"TOO LONG\\n\"); continue; }\n"
        "        fputs(out, stdout);\n"
        "    }\n"
        "    return 0;\n"
        "}\n"
    )
    source = tmp_path / "iw.c"
    source.write_text(harness)
    binary = tmp_path / "iw"
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", "-o", str(binary), str(source)], check=True, capture_output=True)
    output = subprocess.run([str(binary), *bodies, "IW1," + "x" * 130], check=True, capture_output=True).stdout
    lines = output.split(b"\n")
    for body, produced in zip(bodies, lines):
        assert produced == b"$" + body.encode() + b"*" + f"{lp.crc16_ccitt_false(body.encode()):04X}".encode() + b"\r"
    assert lines[len(bodies)] == b"TOO LONG"
