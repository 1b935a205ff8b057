"""A QR code as a black-and-white PNG, written with the standard library (zlib), so printing the
resident link needs only the `qrcode` package for the matrix: neither Pillow nor PyPNG."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(matrix: list[list[bool]], scale: int = 8) -> bytes:
    """8-bit greyscale PNG of `matrix` (True: dark module), each module `scale` pixels square."""
    rows = []
    for line in matrix:
        pixels = bytes(0 if dark else 255 for dark in line for _ in range(scale))
        rows += [b"\x00" + pixels] * scale  # filter type 0 (none) per scanline
    width, height = len(matrix[0]) * scale, len(matrix) * scale
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, greyscale, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + _chunk(b"IEND", b""))


def write_qr(text: str, path: Path, *, scale: int = 8) -> None:
    """Write `text` as a QR code (medium error correction, 4-module quiet zone) to the PNG file `path`."""
    import qrcode  # the gateway extra; imported here so the rest of the gateway runs without it

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    Path(path).write_bytes(png_bytes(code.get_matrix(), scale))
