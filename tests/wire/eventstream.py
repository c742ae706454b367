"""AWS event-stream framing (`application/vnd.amazon.eventstream`), written from the spec, and
Bedrock ConverseStream replays built on it.

A message is: prelude (total length u32 BE, headers length u32 BE, CRC32 of those 8 bytes),
headers (name length u8, name, value type u8 — 7 = string —, value length u16 BE, value),
payload, then the CRC32 of everything before it. Bedrock sends one message per event with
headers `:event-type`, `:content-type: application/json`, `:message-type: event`; a failure
mid-stream is `:message-type: exception` with `:exception-type`. Each payload is the event
member's JSON plus a `p` padding field (Bedrock pads payloads so their size leaks nothing),
which clients must ignore.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BToolUse",
    "bedrock_error_body",
    "bedrock_exception",
    "bedrock_stream",
    "bedrock_text",
    "bedrock_thinking",
    "bedrock_tool_use",
    "bedrock_texts",
    "decode",
    "encode",
    "event",
]

_STRING = 7


def _crc(data: bytes) -> int:
    return binascii.crc32(data) & 0xFFFFFFFF


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string-valued headers."""
    hdr = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hdr += struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v
    total = 12 + len(hdr) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdr))
    prelude += struct.pack(">I", _crc(prelude))
    body = prelude + hdr + payload
    return body + struct.pack(">I", _crc(body))


def decode(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Every whole, CRC-valid message in `data` (anything undecodable ends the walk)."""
    out: list[tuple[dict[str, str], bytes]] = []
    i = 0
    while i + 16 <= len(data):
        total, hlen, pcrc = struct.unpack(">III", data[i : i + 12])
        if pcrc != _crc(data[i : i + 8]) or i + total > len(data) or total < 16 + hlen:
            break
        msg = data[i : i + total]
        if struct.unpack(">I", msg[-4:])[0] != _crc(msg[:-4]):
            break
        headers: dict[str, str] = {}
        j = 12
        while j < 12 + hlen:
            nlen = msg[j]
            name = msg[j + 1 : j + 1 + nlen].decode()
            j += 1 + nlen
            vtype, vlen = struct.unpack(">BH", msg[j : j + 3])
            assert vtype == _STRING
            headers[name] = msg[j + 3 : j + 3 + vlen].decode()
            j += 3 + vlen
        out.append((headers, msg[12 + hlen : -4]))
        i += total
    return out


def _payload(obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {**obj, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: 5 + len(obj) * 3]}, separators=(",", ":")
    ).encode()


def event(event_type: str, obj: dict[str, Any]) -> bytes:
    """One ConverseStream event message."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode(headers, _payload(obj))


def bedrock_exception(
    exception_type: str = "modelStreamErrorException", message: str = "The model stream failed.", **extra: Any
) -> bytes:
    """An in-band exception message (e.g. modelStreamErrorException, throttlingException)."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode(headers, json.dumps({"message": message, **extra}).encode())


@dataclass(frozen=True)
class BToolUse:
    name: str
    arguments: str
    id: str = "tooluse_wire_0"
    fragment: int = 6


@dataclass(frozen=True)
class BThinking:
    deltas: tuple[str, ...]
    signature: str | None = "c2lnLXdpcmU="


def bedrock_stream(
    blocks: Sequence[str | tuple[str, ...] | BToolUse | BThinking],
    *,
    stop_reason: str | None = "end_turn",
    usage: tuple[int, int] | None = (11, 5),
    cache_read: int | None = None,
) -> list[bytes]:
    """messageStart, content blocks (str = one text delta; tuple = text deltas), messageStop, metadata.

    `stop_reason=None` leaves out messageStop and metadata (a stream cut short without its end).
    """
    out = [event("messageStart", {"role": "assistant"})]
    for index, block in enumerate(blocks):
        if isinstance(block, BToolUse):
            start = {"toolUse": {"toolUseId": block.id, "name": block.name}}
            out.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            args = block.arguments
            for k in range(0, len(args), block.fragment):
                delta = {"toolUse": {"input": args[k : k + block.fragment]}}
                out.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        elif isinstance(block, BThinking):
            for piece in block.deltas:
                delta = {"reasoningContent": {"text": piece}}
                out.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
            if block.signature:
                delta = {"reasoningContent": {"signature": block.signature}}
                out.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        else:
            for piece in (block,) if isinstance(block, str) else block:
                out.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
        out.append(event("contentBlockStop", {"contentBlockIndex": index}))
    if stop_reason is None:
        return out
    out.append(event("messageStop", {"stopReason": stop_reason}))
    if usage is not None:
        u: dict[str, Any] = {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)}
        if cache_read is not None:
            u["cacheReadInputTokens"] = cache_read
        out.append(event("metadata", {"usage": u, "metrics": {"latencyMs": 321}}))
    return out


def bedrock_text(deltas: Sequence[str] = ("Hello", ", world", "!"), **kw: Any) -> list[bytes]:
    return bedrock_stream([tuple(deltas)], **kw)


def bedrock_thinking(thinking: Sequence[str], text: Sequence[str], signature: str = "c2lnLXdpcmU=") -> list[bytes]:
    return bedrock_stream([BThinking(tuple(thinking), signature), tuple(text)])


def bedrock_tool_use(calls: Sequence[BToolUse], text: Sequence[str] = ()) -> list[bytes]:
    blocks: list[Any] = [tuple(text)] if text else []
    return bedrock_stream([*blocks, *calls], stop_reason="tool_use")


def bedrock_texts(chunks: Sequence[bytes]) -> list[str]:
    """The text deltas carried by a list of messages (garbage and partial frames skipped)."""
    out = []
    for chunk in chunks:
        for headers, payload in decode(chunk):
            if headers.get(":event-type") == "contentBlockDelta":
                delta = json.loads(payload)["delta"]
                if "text" in delta:
                    out.append(delta["text"])
    return out


_ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    401: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    409: ("ConflictException", "The request conflicts with the current state of the resource."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is temporarily unavailable."),
}


def bedrock_error_body(status: int) -> bytes:
    """A restJson error body: botocore reads the code from `__type` when no x-amzn-ErrorType header."""
    code, message = _ERRORS.get(status, ("InternalServerException", "error"))
    return json.dumps({"__type": f"com.amazon.bedrock#{code}", "message": message}).encode()
