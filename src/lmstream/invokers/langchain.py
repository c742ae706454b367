"""LangChain: any `BaseChatModel`'s `astream()` as lmstream events.

`LangChainLMInvoker(chat_model)` wraps a model you built; `langchain/<module:attr>` builds one
(`attr` a chat-model class, called with `config={"model_kwargs": {...}}`, or an instance).
AIMessageChunks become deltas: string or block content (text, Anthropic `thinking`, standard
`reasoning`, Bedrock `reasoning_content`, `additional_kwargs["reasoning_content"]`) and
`tool_call_chunks` as streamed tool-call fragments; `usage_metadata` increments are summed.
The end of a stream is the model library's to judge (LangChain has no end marker of its own).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Unpack

from .. import _json
from ..errors import ConfigurationError, LMStreamError
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from ._http import require
from ._sdk import with_idle_timeout
from ._sdk_errors import raise_mapped
from .base import BaseLMInvoker, CallParams, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .options import InvokerOptions
from .params import INT, NUMBER, STRING, STRING_OR_DICT, ParamTable

__all__ = ["LangChainLMInvoker", "to_langchain"]

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def to_langchain(messages: list[Message]) -> list[Any]:
    """lmstream messages -> langchain-core messages."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    for m in messages:
        if m.role == "system":
            out.append(SystemMessage(m.text))
            continue
        results = [c for c in m.contents if isinstance(c, ToolResult)]
        for r in results:
            out.append(ToolMessage(r.output, tool_call_id=r.id, status="error" if r.is_error else "success"))
        if results:
            continue
        text = "".join(c for c in m.contents if isinstance(c, str))
        if m.role == "assistant":
            calls = [{"id": c.id, "name": c.name, "args": c.arguments} for c in m.contents if isinstance(c, ToolCall)]
            out.append(AIMessage(text, tool_calls=calls))
            continue
        if any(isinstance(c, Attachment) for c in m.contents):
            parts: list[Any] = [
                {"type": "text", "text": c} if isinstance(c, str) else langchain_block(c)
                for c in m.contents
                if isinstance(c, (str, Attachment)) and c != ""
            ]
            out.append(HumanMessage(parts))
        else:
            out.append(HumanMessage(text))
    return out


_LC_TYPES = {"image": "image", "audio": "audio", "pdf": "file"}


def langchain_block(a: Attachment) -> dict[str, Any]:
    """LangChain's standard multimodal content blocks (langchain-core 1.x): `image`, `audio`,
    `file` with `base64` + `mime_type` or `url`, `text-plain` for a text file; each chat model's
    integration turns them into its provider's shape (and refuses what the model cannot take)."""
    if a.kind == "text" and a.url is None:
        block: dict[str, Any] = {"type": "text-plain", "mime_type": "text/plain", "text": a.text()}
        if a.filename:
            block["title"] = a.filename
        return block
    kind = _LC_TYPES.get(a.kind, "file")
    if a.url is not None:
        return {"type": kind, "url": a.url, "mime_type": a.mime_type}
    block = {"type": kind, "base64": a.base64(), "mime_type": a.mime_type}
    if a.filename and kind == "file":
        block["extras"] = {"filename": a.filename}
    return block


def _load(spec: str, kwargs: dict[str, Any]) -> Any:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigurationError(f"langchain model {spec!r}: write it as 'langchain/<module>:<ChatModelClass>'")
    require("langchain_core", "langchain")
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"langchain model {spec!r}: cannot import it ({exc})") from exc
    return target(**kwargs) if callable(target) and isinstance(target, type) else target


class LangChainLMInvoker(BaseLMInvoker):
    """Stream a LangChain chat model: `LangChainLMInvoker(ChatOpenAI(model="gpt-4o-mini"))`.

    Tools are bound with `bind_tools`; structured output is instructed in the system prompt and
    validated (LangChain's `with_structured_output` does not stream text). Retries of the
    model's own client should be off (`max_retries=0`): lmstream retries before the first token.
    """

    provider: ClassVar[str] = "langchain"
    tracing_name_from_host: ClassVar[bool] = True
    extra_params: ClassVar[ParamTable] = {
        "top_k": INT,
        "frequency_penalty": NUMBER,
        "presence_penalty": NUMBER,
        "reasoning_effort": STRING,
        "tool_choice": STRING_OR_DICT,
    }

    def __init__(
        self,
        chat_model: Any = None,
        model_name: str | None = None,
        *,
        model_kwargs: dict[str, Any] | None = None,
        **options: Unpack[InvokerOptions],
    ) -> None:
        if isinstance(chat_model, str):  # "module:Class", like the model id's form
            chat_model, model_name = None, chat_model
        api_key = options.pop("api_key", None)  # it goes to the chat model, which keeps it
        base_url = options.get("base_url")
        if chat_model is None:
            if not model_name:
                raise ConfigurationError("LangChainLMInvoker needs a chat model (or 'langchain/<module>:<Class>')")
            kwargs = dict(model_kwargs or {})
            if api_key:
                kwargs.setdefault("api_key", api_key)
            if base_url:
                kwargs.setdefault("base_url", base_url)
            chat_model = _load(model_name, kwargs)
        if not hasattr(chat_model, "astream"):
            raise ConfigurationError(
                f"LangChainLMInvoker needs a LangChain chat model, got {type(chat_model).__name__}"
            )
        name = getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None)
        super().__init__(
            model_name or (name if isinstance(name, str) and name else type(chat_model).__name__), **options
        )
        self.chat_model = chat_model

    def __repr__(self) -> str:
        return f"LangChainLMInvoker({type(self.chat_model).__name__}, model_name={self.model_name!r})"

    def _runnable(self, params: CallParams) -> Any:
        model = self.chat_model
        tool_choice = params.pop("tool_choice", None)
        if params.tools:
            specs = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in params.tools
            ]
            extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
            try:
                model = model.bind_tools(specs, **extra)
            except NotImplementedError:
                raise ConfigurationError(f"{type(self.chat_model).__name__} does not support tools") from None
        params.pop("stop", None)
        return model.bind(**params) if params else model

    def _messages(self, messages: list[Message], params: CallParams) -> list[Message]:
        if params.response_schema is None:
            return messages
        instruction = (
            "Answer with only a JSON value that matches this JSON schema, no prose, no code fence:\n"
            + _json.dumps(params.response_schema)
        )
        return [Message.system(instruction), *messages]

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Any]:
        params = params.copy()
        stop = params.get("stop")
        runnable = self._runnable(params)
        lc_messages = to_langchain(self._messages(messages, params))
        kwargs = {"stop": [stop] if isinstance(stop, str) else list(stop)} if stop else {}
        stream = runnable.astream(lc_messages, **kwargs)
        finish: str | None = None
        usage_in = usage_out = 0
        thinking = False
        try:
            async for chunk in with_idle_timeout(stream.__aiter__(), self.retry_config.idle_timeout, self.provider):
                for piece in _pieces(chunk):
                    if piece.__class__ is str:
                        if thinking:
                            thinking = False
                            yield ThinkingDelta(end=True)
                    elif piece.__class__ is ThinkingDelta:
                        thinking = True
                    yield piece
                for tc in getattr(chunk, "tool_call_chunks", None) or []:
                    index = tc.get("index")
                    yield ToolCallDelta(
                        index if isinstance(index, int) else 0, tc.get("id"), tc.get("name"), tc.get("args") or ""
                    )
                u = getattr(chunk, "usage_metadata", None)
                if u:
                    usage_in += u.get("input_tokens") or 0
                    usage_out += u.get("output_tokens") or 0
                    cached = (u.get("input_token_details") or {}).get("cache_read")
                    reasoning = (u.get("output_token_details") or {}).get("reasoning")
                    yield UsageDelta(usage_in, usage_out, cached, reasoning)
                meta = getattr(chunk, "response_metadata", None) or {}
                # each integration's own end marker: the finish reason on its last chunk
                reason = (
                    meta.get("finish_reason")
                    or meta.get("stop_reason")
                    or meta.get("stopReason")
                    or meta.get("done_reason")
                )
                if reason:
                    finish = _FINISH.get(reason, reason)
        except (LMStreamError, GeneratorExit):
            raise
        except Exception as exc:
            raise_mapped(self.provider, exc, "langchain-core")
        finally:
            await stream.aclose()
        yield FinishDelta(finish)  # None: the model never said why it ended, so it was cut short


def _pieces(chunk: Any) -> list[Any]:
    """Text and thinking deltas of one AIMessageChunk, in order."""
    out: list[Any] = []
    extra = getattr(chunk, "additional_kwargs", None) or {}
    if extra.get("reasoning_content"):
        out.append(ThinkingDelta(extra["reasoning_content"]))
    content = chunk.content
    if isinstance(content, str):
        if content:
            out.append(content)
        return out
    for block in content or []:
        if isinstance(block, str):
            out.append(block)
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            out.append(block["text"])
        elif kind == "thinking":
            out.append(ThinkingDelta(block.get("thinking") or "", signature=block.get("signature")))
        elif kind == "reasoning":
            out.append(ThinkingDelta(block.get("reasoning") or "", signature=block.get("signature")))
        elif kind == "reasoning_content":
            rc = block.get("reasoning_content") or {}
            out.append(ThinkingDelta(rc.get("text") or "", signature=rc.get("signature")))
    return out
