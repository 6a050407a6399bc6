"""Tiny but real media built with the standard library at import time.

- video artifacts: an animated 16x16 GIF89a (4 frames, looping);
- music artifacts: a 0.25 s 8 kHz mono 16-bit PCM WAV (a 440 Hz tone).
"""

from __future__ import annotations

import io
import math
import struct
import wave

PALETTE = bytes([0x10, 0x10, 0x30, 0xE0, 0x40, 0x40, 0x40, 0xC0, 0x60, 0xF0, 0xF0, 0xF0])  # 4 RGB colours
SIZE = 16
FRAMES = 4


def _lzw_literals(indices: list[int], min_code_size: int = 2) -> bytes:
    """GIF LZW data that uses only literal codes.

    A clear code is emitted every two pixels so the decoder's table never grows past the
    point where the code width would change: every code is `min_code_size + 1` bits.
    """
    clear, eoi, width = 1 << min_code_size, (1 << min_code_size) + 1, min_code_size + 1
    codes: list[int] = []
    for i in range(0, len(indices), 2):
        codes.append(clear)
        codes.extend(indices[i:i + 2])
    codes.append(eoi)
    buf = nbits = 0
    out = bytearray()
    for code in codes:
        buf |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(buf & 0xFF)
            buf >>= 8
            nbits -= 8
    if nbits:
        out.append(buf & 0xFF)
    blocks = bytearray([min_code_size])
    for i in range(0, len(out), 255):
        chunk = out[i:i + 255]
        blocks.append(len(chunk))
        blocks += chunk
    blocks.append(0)
    return bytes(blocks)


def make_gif(size: int = SIZE, frames: int = FRAMES) -> bytes:
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", size, size, 0xF1, 0, 0)  # global colour table of 4 entries
    out += PALETTE
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for f in range(frames):
        out += b"\x21\xf9\x04\x04" + struct.pack("<H", 10) + b"\x00\x00"  # 100 ms per frame
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, size, size, 0)
        pixels = [((x + y + f * 4) // 4) % 4 for y in range(size) for x in range(size)]
        out += _lzw_literals(pixels)
    out += b"\x3b"
    return bytes(out)


def make_wav(seconds: float = 0.25, rate: int = 8000, hz: float = 440.0) -> bytes:
    samples = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(samples))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


GIF = make_gif()
WAV = make_wav()


def builtin(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) for a generated artifact name, else None."""
    if name.endswith(".gif"):
        return GIF, "image/gif"
    if name.endswith(".wav"):
        return WAV, "audio/wav"
    return None
