"""JWT encoding and the generated media files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import struct
import wave

import pytest

from dispatcher.sandbox import jwt, media


def test_jwt_is_standard_hs256():
    secret = b"k" * 32
    token = jwt.mint({"sub": "u", "exp": 1.5}, secret)
    head, body, sig = token.split(".")
    assert "=" not in token
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(head))) == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(pad(sig)) == expected
    assert jwt.verify(token, secret) == {"sub": "u", "exp": 1.5}
    with pytest.raises(jwt.InvalidToken):
        jwt.verify(token, b"other")
    with pytest.raises(jwt.InvalidToken):
        jwt.verify(f"{head}.{body[:-2]}.{sig}", secret)


def _gif_frames(data: bytes) -> list[list[int]]:
    """Minimal GIF decoder (standard variable-width LZW) to prove the file is valid."""
    assert data[:6] == b"GIF89a" and data[-1:] == b"\x3b"
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    frames = []
    while data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: skip sub-blocks
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
            continue
        assert data[pos] == 0x2C
        w, h = struct.unpack("<HH", data[pos + 5:pos + 9])
        pos += 10
        min_size = data[pos]
        pos += 1
        raw = bytearray()
        while data[pos]:
            raw += data[pos + 1:pos + 1 + data[pos]]
            pos += data[pos] + 1
        pos += 1
        clear, eoi = 1 << min_size, (1 << min_size) + 1
        bits = int.from_bytes(raw, "little")
        offset, size, out, table, prev = 0, min_size + 1, [], None, None
        while True:
            code = (bits >> offset) & ((1 << size) - 1)
            offset += size
            if code == clear:
                table = [[i] for i in range(clear)] + [[], []]
                size, prev = min_size + 1, None
                continue
            if code == eoi:
                break
            if prev is None:
                entry = table[code]
            else:
                entry = table[code] if code < len(table) else prev + [prev[0]]
                table.append(prev + [entry[0]])
                if len(table) == (1 << size) and size < 12:
                    size += 1
            out += entry
            prev = entry
        assert len(out) == w * h
        frames.append(out)
    assert (width, height) == (w, h)
    return frames


def test_gif_is_a_valid_animation():
    frames = _gif_frames(media.GIF)
    assert len(frames) == media.FRAMES
    assert frames[0] != frames[1] and all(0 <= p < 4 for p in frames[0])
    assert b"NETSCAPE2.0" in media.GIF


def test_wav_is_valid_pcm():
    assert media.WAV[:4] == b"RIFF" and media.WAV[8:12] == b"WAVE"
    with wave.open(io.BytesIO(media.WAV)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() == 2000
