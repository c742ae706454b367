"""What a file is, read from its first bytes (magic numbers), never from its name or a label.

A label is what a client says; the bytes are what a model (or a browser showing a thumbnail)
will get. A PNG labelled `text/plain` is a PNG; HTML or an executable labelled `image/png` is
refused, because a page that renders it inline would run it.
"""

from __future__ import annotations

__all__ = ["KINDS", "SUPPORTED", "TEXT_TYPES", "kind_of", "sniff", "describe"]

#: every type lmstream accepts, by kind (the word error messages and capability tables use)
KINDS: dict[str, tuple[str, ...]] = {
    "image": ("image/png", "image/jpeg", "image/gif", "image/webp"),
    "pdf": ("application/pdf",),
    "audio": ("audio/wav", "audio/mpeg"),
    "text": ("text/plain", "text/markdown", "text/csv"),
}
SUPPORTED: tuple[str, ...] = tuple(t for types in KINDS.values() for t in types)
#: text subtypes a label may keep (the bytes cannot tell markdown from plain text; both are text)
TEXT_TYPES = KINDS["text"]
_ALIASES = {"image/jpg": "image/jpeg", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg"}


def _mp3_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a valid version, layer III, a valid bitrate."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    return version != 1 and layer == 1 and bitrate not in (0, 15)


def _sniff_binary(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"ID3") or _mp3_frame(data[:3]):
        return "audio/mpeg"
    return None


#: refused outright, with the reason a person would give
_DANGEROUS: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "an executable (Windows PE)"),
    (b"\xcf\xfa\xed\xfe", "an executable (Mach-O)"),
    (b"\xfe\xed\xfa\xcf", "an executable (Mach-O)"),
    (b"#!", "a script"),
    (b"PK\x03\x04", "a ZIP archive"),
)
_MARKUP = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<svg", b"<?xml", b"<!--")


def _text(data: bytes) -> str | None:
    """`text/plain` when the bytes are UTF-8 text without control characters; "markup" for HTML,
    SVG or XML (a browser runs scripts in them); None for anything else."""
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the 4 KiB edge
            return None
        text = head[: exc.start].decode("utf-8")
    if any((ord(ch) < 32 and ch not in "\t\n\r\f") or ch == "\x7f" for ch in text):
        return None
    lowered = text.lstrip("\ufeff \t\r\n").lower().encode()
    if lowered.startswith(_MARKUP) or b"<script" in lowered or b"<html" in lowered:
        return "markup"
    return "text/plain"


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes are (one of `SUPPORTED`), or None when they are none of them."""
    if not data:
        return None
    found = _sniff_binary(data)
    if found:
        return found
    return t if (t := _text(data)) in SUPPORTED else None


def describe(data: bytes) -> str:
    """What unsupported bytes look like, for the error message."""
    for magic, what in _DANGEROUS:
        if data.startswith(magic):
            return what
    if _text(data) == "markup":
        return "HTML/SVG/XML markup"
    if not data:
        return "empty"
    return "binary data of no supported type"


def normalise(label: str | None) -> str | None:
    """A label's bare type (`image/JPG; x=1` -> `image/jpeg`), or None."""
    if not label:
        return None
    bare = label.split(";", 1)[0].strip().lower()
    return _ALIASES.get(bare, bare)


def kind_of(mime_type: str) -> str | None:
    """`image`, `pdf`, `audio` or `text` (None: not a supported type)."""
    for kind, types in KINDS.items():
        if mime_type in types:
            return kind
    return None
