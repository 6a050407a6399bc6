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


# -- uploads: the type and extension a received file is kept under ---------------------------

# MIME type -> extension, as the upstreams document their accepted files (Runway's asset table)
UPLOAD_TYPES = {
    "image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp",
    "image/mpo": "mpo", "video/mp4": "mp4", "video/quicktime": "mov", "video/3gpp": "3gp",
    "video/x-matroska": "mkv", "video/x-flv": "flv", "video/mpeg": "mpeg", "video/mp2t": "ts",
    "video/x-msvideo": "avi", "video/x-motion-jpeg": "mjpeg", "video/webm": "webm", "video/ogg": "ogv",
    "audio/wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3", "audio/flac": "flac", "audio/ogg": "ogg",
    "audio/webm": "webm",
}
_BY_EXTENSION = {ext: kind for kind, ext in reversed(UPLOAD_TYPES.items())} | {"jpg": "image/jpeg"}
OCTET_STREAM = "application/octet-stream"


def upload_type(name: str | None, content_type: str | None, default_ext: str) -> tuple[str, str]:
    """(extension, MIME type) to keep an upload under: the file name's extension, else the one its
    declared type implies, else `default_ext`; the declared type, else the one the extension implies."""
    declared = (content_type or "").split(";")[0].strip().lower()
    named = name.rsplit(".", 1)[-1].lower() if name and "." in name else ""
    ext = named if named.isalnum() and len(named) <= 8 else UPLOAD_TYPES.get(declared, default_ext)
    if not declared or declared == OCTET_STREAM:
        declared = _BY_EXTENSION.get(ext, OCTET_STREAM)
    return ext, declared


async def keep_upload(sb, request, default_ext: str) -> str:
    """Keep a request's raw body as an uploaded medium (`sb`: the Sandbox), under the extension
    and type of `upload_type` (the name is `?name=`, the type `Content-Type`); returns its media name."""
    ext, content_type = upload_type(request.query_params.get("name"), request.headers.get("content-type"),
                                    default_ext)
    return sb.store_upload(await request.body(), content_type, ext)
