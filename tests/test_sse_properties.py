"""Property tests for the two incremental parsers on the hot path.

* `iter_sse` (invokers/_http.py): any list of events, framed with LF, CRLF or CR and cut at
  arbitrary byte offsets (inside multi-byte UTF-8, between CR and LF), parses back to exactly
  the original (event, data) pairs; comments, `id:` and `retry:` lines are ignored; a trailing
  event without its blank line is discarded (SSE spec).
* `PartialJSONParser` (structured.py): any JSON document fed in arbitrary pieces ends with
  `.value` equal to the document, and reading `.value` in between never raises.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lmstream.invokers._http import iter_sse
from lmstream.structured import PartialJSONParser

# --------------------------------------------------------------------------- iter_sse

_LINE_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
_line = st.text(_LINE_CHARS, max_size=12)
# `event:` values are whitespace-stripped by the parser, so names carry none at their ends.
_name = st.text(_LINE_CHARS, max_size=8).filter(lambda s: s.encode().strip() == s.encode())
_event = st.tuples(_name, st.lists(_line, min_size=1, max_size=4))
_noise = st.sampled_from([": keep-alive", ":", "id: 42", "id:", "retry: 1000", ": ping é"])


def _serialise(events, newline: str, noise: list[str], trailing: tuple[str, list[str]] | None) -> bytes:
    out: list[str] = []
    k = 0

    def maybe_noise() -> None:
        nonlocal k
        if noise:
            out.append(noise[k % len(noise)] + newline)
            k += 1

    for name, lines in events:
        maybe_noise()
        if name:
            out.append(f"event: {name}{newline}")
        for line in lines:
            out.append(f"data: {line}{newline}")
            maybe_noise()
        out.append(newline)
    if trailing is not None:  # an incomplete last event: no blank line after it
        name, lines = trailing
        if name:
            out.append(f"event: {name}{newline}")
        out.extend(f"data: {line}{newline}" for line in lines)
    return "".join(out).encode()


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(body[last:p])
        last = p
    pieces.append(body[last:])
    return [p for p in pieces if p]


async def _parse(pieces: list[bytes]) -> list[tuple[bytes, bytes]]:
    async def gen():
        for p in pieces:
            yield p

    return [pair async for pair in iter_sse(gen())]


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    noise=st.lists(_noise, max_size=3),
    trailing=st.none() | _event,
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_iter_sse_roundtrip_any_split(events, newline, noise, trailing, cuts):
    body = _serialise(events, newline, noise, trailing)
    got = asyncio.run(_parse(_cut(body, cuts)))
    expected = [(name.encode(), "\n".join(lines).encode()) for name, lines in events]
    assert got == expected


@given(events=st.lists(_event, min_size=1, max_size=4))
def test_iter_sse_every_single_byte_split(events):
    """One byte per read: every CR/LF pair and every UTF-8 sequence is cut somewhere."""
    body = _serialise(events, "\r\n", [], None)
    got = asyncio.run(_parse([body[i : i + 1] for i in range(len(body))]))
    assert got == [(n.encode(), "\n".join(ls).encode()) for n, ls in events]


def test_iter_sse_examples():
    body = b": hi\r\nid: 1\r\nevent: a\r\ndata: x\r\ndata:y\r\n\r\nretry: 5\ndata: \xc3\xa9\n\ndata: lost"
    assert asyncio.run(_parse([body[:23], body[23:24], body[24:]])) == [(b"a", b"x\ny"), (b"", "é".encode())]


# --------------------------------------------------------------------------- PartialJSONParser

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


def _feed_all(doc: str, cuts: list[int]) -> Any:
    parser = PartialJSONParser()
    points = [*sorted({c % (len(doc) + 1) for c in cuts}), len(doc)]
    last = 0
    for p in points:
        parser.feed(doc[last:p])
        last = p
        _ = parser.value  # never raises, whatever the prefix
    parser.close()
    assert parser.error is None, parser.error
    return parser.value


@settings(max_examples=300, deadline=None)
@given(
    value=_json_values,
    cuts=st.lists(st.integers(min_value=0), max_size=10),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 2]),
)
def test_partial_json_ends_with_the_document(value, cuts, ascii_only, indent):
    doc = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert _feed_all(doc, cuts) == value


@given(value=_json_values)
def test_partial_json_char_by_char(value):
    doc = json.dumps(value)
    assert _feed_all(doc, list(range(len(doc)))) == value
