"""Request bodies -> processor arguments, validated before anything reaches the model.

`parse_chat` reads what the `ai` package's `DefaultChatTransport` posts (`{id, messages:
UIMessage[], trigger, messageId?}`) and turns the UI messages into lmstream history;
`parse_stream` reads `/v1/stream`'s `{"prompt" | "prompt_kwargs", "history", "hyperparameters"}`.
Every error names the offending field, so a client can fix its request.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AttachmentError
from ..prompt import Content, Message, PromptBuilder, text_key
from ..types import HYPERPARAMETER_NAMES, Attachment, ThinkingBlock, ToolCall, ToolResult
from .errors import BadRequest
from .files import attachment_for, ref_of
from .policy import ClientPolicy

__all__ = ["BadRequest", "ChatRequest", "PromptSlot", "StreamRequest", "parse_chat", "parse_stream"]

_CHAT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRIGGERS = ("submit-message", "regenerate-message")
_ROLES = ("system", "user", "assistant")
#: no policy given (a worker re-reading a body the web node already checked): the allow-list, no ceiling
_ANY_CEILING = ClientPolicy()


@dataclass(slots=True)
class PromptSlot:
    """Where a user's text goes: the user template's one free key, or (None) the user message.
    `keys` are all the templates' keys, `required` those without a default (for `prompt_kwargs`)."""

    key: str | None
    keys: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @classmethod
    def of(cls, builder: PromptBuilder) -> PromptSlot:
        key = text_key(builder)
        every = tuple(builder.prompt_keys)
        required = tuple(k for k in every if k not in builder.key_defaults)
        return cls(key, every, required)

    def check_kwargs(self, raw: Any) -> dict[str, Any]:
        """A client's `prompt_kwargs`: only the templates' keys, every required one, plain values."""
        kw = _obj(raw, "prompt_kwargs")
        for k, v in kw.items():
            if k not in self.keys:
                name = k if len(k) <= 40 and k.isidentifier() else repr(k[:40])
                allowed = ", ".join(self.keys) or 'none: send "prompt" instead'
                raise BadRequest(f"prompt_kwargs.{name}", f"not a key of the prompt templates (they take: {allowed})")
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise BadRequest(f"prompt_kwargs.{k}", "must be a string or a number")
        missing = [k for k in self.required if k not in kw]
        if missing:
            raise BadRequest("prompt_kwargs", f"missing {', '.join(missing)} (the templates need them)")
        return kw

    def kwargs(self, text: str, attachments: list[Content]) -> dict[str, Any]:
        """`prompt_kwargs` and `extra_contents` for `process()`/`stream()`."""
        if self.key is None:
            return {"prompt_kwargs": {}, "extra_contents": [text, *attachments] if text else attachments}
        return {"prompt_kwargs": {self.key: text}, "extra_contents": attachments or None}


@dataclass(slots=True)
class ChatRequest:
    chat_id: str
    trigger: str
    history: list[Message]
    text: str
    attachments: list[Content] = field(default_factory=list)
    hyperparameters: dict[str, Any] | None = None


@dataclass(slots=True)
class StreamRequest:
    prompt_kwargs: dict[str, Any]
    extra_contents: list[Content] | None
    history: list[Message]
    hyperparameters: dict[str, Any] | None


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise BadRequest(where, "must be a JSON object")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise BadRequest(where, "must be a string")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise BadRequest(where, "must be an array")
    return v


def _data_url(url: str, where: str) -> tuple[bytes, str]:
    if not url.startswith("data:") or "," not in url:
        raise BadRequest(where, "only data: URLs are accepted (the server fetches nothing)")
    head, _, payload = url[5:].partition(",")
    media, _, enc = head.partition(";")
    if enc != "base64":
        raise BadRequest(where, "data: URLs must be base64")
    try:
        return base64.b64decode(payload, validate=True), media or "application/octet-stream"
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(where, "invalid base64") from exc


def _user_contents(
    parts: list[Any], where: str, blobs: Mapping[str, bytes] | None = None
) -> tuple[str, list[Content]]:
    texts: list[str] = []
    files: list[Content] = []
    for j, p in enumerate(parts):
        pw = f"{where}.parts[{j}]"
        p = _obj(p, pw)
        kind = _str(p.get("type"), f"{pw}.type")
        if kind == "text":
            texts.append(_str(p.get("text"), f"{pw}.text"))
        elif kind == "file":
            url = _str(p.get("url"), f"{pw}.url")
            if ref_of(url) is not None:  # a file the server keeps (protocols.files)
                label = p.get("mediaType")
                a = attachment_for(url, label if isinstance(label, str) else None, p.get("filename") or None, blobs)
                if a is None:
                    raise BadRequest(f"{pw}.url", "this file is no longer kept by the server; attach it again", 410)
                files.append(a)
                continue
            data, media = _data_url(url, f"{pw}.url")
            name = p.get("filename")
            try:
                files.append(Attachment(data, _str(p.get("mediaType", media), f"{pw}.mediaType"), name or None))
            except AttachmentError as exc:  # the bytes are no type lmstream carries, whatever the label
                raise BadRequest(pw, str(exc), 415) from None
        # other part kinds (data-*, source-*) carry nothing the model reads
    return "".join(texts), files


def _assistant_messages(parts: list[Any], where: str) -> list[Message]:
    """One assistant turn per step (`step-start`), each followed by its tool results."""
    out: list[Message] = []
    said: list[Content] = []
    results: list[ToolResult] = []

    def flush() -> None:
        nonlocal said, results
        if said:
            out.append(Message("assistant", said))
        if results:
            out.append(Message.tool(results))
        said, results = [], []

    for j, p in enumerate(parts):
        pw = f"{where}.parts[{j}]"
        p = _obj(p, pw)
        kind = _str(p.get("type"), f"{pw}.type")
        if kind == "step-start":
            flush()
        elif kind == "text":
            said.append(_str(p.get("text"), f"{pw}.text"))
        elif kind == "reasoning":
            said.append(ThinkingBlock(_str(p.get("text"), f"{pw}.text")))
        elif kind == "dynamic-tool" or kind.startswith("tool-"):
            name = _str(p.get("toolName"), f"{pw}.toolName") if kind == "dynamic-tool" else kind[5:]
            call_id = _str(p.get("toolCallId"), f"{pw}.toolCallId")
            args = p.get("input")
            state = p.get("state")
            if state not in ("output-available", "output-error"):
                continue  # a call that never got its result (the answer was cut): providers reject it
            said.append(ToolCall(call_id, name, args if isinstance(args, dict) else {}))
            if state == "output-available":
                out_v = p.get("output")
                results.append(ToolResult(call_id, name, out_v if isinstance(out_v, str) else _dump(out_v)))
            elif state == "output-error":
                results.append(ToolResult(call_id, name, str(p.get("errorText", "")), True))
    flush()
    return out


def _dump(v: Any) -> str:
    from .._json import dumps

    return dumps(v)


def parse_chat(
    body: Any, max_messages: int, policy: ClientPolicy | None = None, blobs: Mapping[str, bytes] | None = None
) -> ChatRequest:
    """Validate a `DefaultChatTransport` body; the last message must be the user's. Its
    `hyperparameters` pass `policy` (the allow-list, no ceiling, when None)."""
    hyper = (policy or _ANY_CEILING).check(_obj(body, "body").get("hyperparameters"))
    body = _obj(body, "body")
    chat_id = _str(body.get("id"), "id")
    if not _CHAT_ID.match(chat_id):
        raise BadRequest("id", "1 to 128 characters of A-Z a-z 0-9 . _ : -")
    trigger = body.get("trigger", "submit-message")
    if trigger not in _TRIGGERS:
        raise BadRequest("trigger", f"must be one of {', '.join(_TRIGGERS)}")
    messages = _list(body.get("messages"), "messages")
    if not messages:
        raise BadRequest("messages", "must not be empty")
    if len(messages) > max_messages:
        raise BadRequest("messages", f"too many messages ({len(messages)}; at most {max_messages})")
    history: list[Message] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        m = _obj(m, where)
        role = m.get("role")
        if role not in _ROLES:
            raise BadRequest(f"{where}.role", f"must be one of {', '.join(_ROLES)}")
        parts = _list(m.get("parts"), f"{where}.parts")
        if role == "assistant":
            history.extend(_assistant_messages(parts, where))
            continue
        text, files = _user_contents(parts, where, blobs)
        if i == len(messages) - 1:
            if role != "user":
                raise BadRequest(f"{where}.role", "the last message must be the user's")
            if not text and not files:
                raise BadRequest(f"{where}.parts", "the user message has no text")
            return ChatRequest(chat_id, trigger, history, text, files, hyper)
        history.append(Message(role, [text, *files] if text else files))
    raise BadRequest(f"messages[{len(messages) - 1}].role", "the last message must be the user's")


_STREAM_KEYS = frozenset({"prompt", "prompt_kwargs", "history", "hyperparameters"})


def parse_stream(body: Any, slot: PromptSlot, max_messages: int, policy: ClientPolicy | None = None) -> StreamRequest:
    """Validate a `/v1/stream` body; a key it does not know is refused, never ignored."""
    body = _obj(body, "body")
    unknown = sorted(set(body) - _STREAM_KEYS)
    if unknown:
        name = unknown[0]
        if name in HYPERPARAMETER_NAMES:
            why = f'a model setting: send it inside "hyperparameters", e.g. {{"hyperparameters": {{"{name}": ...}}}}'
        elif name == "model":
            why = "the model is the server's (lmstream serve --model); a client cannot choose it"
        else:
            why = f"not a field of /v1/stream (it takes: {', '.join(sorted(_STREAM_KEYS))})"
        raise BadRequest(name, why)
    hyper = (policy or _ANY_CEILING).check(body.get("hyperparameters"))
    if ("prompt" in body) == ("prompt_kwargs" in body):
        raise BadRequest("prompt", 'give exactly one of "prompt" (a string) or "prompt_kwargs" (an object)')
    if "prompt" in body:
        kw = slot.kwargs(_str(body["prompt"], "prompt"), [])
    else:
        kw = {"prompt_kwargs": slot.check_kwargs(body["prompt_kwargs"]), "extra_contents": None}
    history: list[Message] = []
    raw = body.get("history")
    if raw is not None:
        raw = _list(raw, "history")
        if len(raw) > max_messages:
            raise BadRequest("history", f"too many messages ({len(raw)}; at most {max_messages})")
        for i, h in enumerate(raw):
            h = _obj(h, f"history[{i}]")
            role = h.get("role")
            if role not in _ROLES:
                raise BadRequest(f"history[{i}].role", "must be one of system, user, assistant")
            history.append(Message(role, [_str(h.get("content"), f"history[{i}].content")]))
    return StreamRequest(kw["prompt_kwargs"], kw["extra_contents"], history, hyper)
