"""OpenAI Chat Completions and every server that speaks it (vLLM, Ollama, llama.cpp, LM Studio).

This path is the benchmarked hot loop, so it speaks HTTP itself (httpx plus lmstream's SSE
reader) rather than through the openai SDK: importing the SDK alone costs several times a whole
first request here, and its per-chunk pydantic models cost about 10x the bare JSON loop (see
benchmarks/). Request shapes and error bodies follow the OpenAI API reference.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Unpack

from .. import _json
from ..errors import ConfigurationError, ProviderError
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from ._files import refuse, text_of
from ._http import (
    ClientCache,
    error_from_status,
    is_event_stream,
    iter_sse,
    map_transport_error,
    not_a_stream_error,
    require,
    resolve_api_key,
)
from .base import BaseLMInvoker, CallParams, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .options import InvokerOptions
from .params import BOOL, DICT, INT, NUMBER, STRING, STRING_OR_DICT, Check, ParamTable, one_of

__all__ = ["ChatFiles", "OpenAIChatCompletionsLMInvoker", "OpenAICompatibleLMInvoker", "chat_part", "to_chat_messages"]

_FINISH = {"function_call": "tool_calls"}


@dataclass(frozen=True, slots=True)
class ChatFiles:
    """What one Chat Completions server takes: the kinds of attachment, and which of them as a
    URL the server fetches itself (the rest must come as bytes)."""

    api: str = "OpenAI Chat Completions"
    kinds: tuple[str, ...] = ("image", "pdf", "audio", "text")
    url_kinds: tuple[str, ...] = ("image",)
    #: image types the server reads (xAI: jpeg and png only)
    image_types: tuple[str, ...] = ("image/png", "image/jpeg", "image/gif", "image/webp")


OPENAI_FILES = ChatFiles()


def chat_part(a: Attachment, files: ChatFiles = OPENAI_FILES) -> dict[str, Any]:
    """One attachment as the Chat Completions content part OpenAI documents for its kind:
    `image_url` (a data: URL or the URL itself), `input_audio` (base64, wav/mp3), `file` (a PDF
    as a data: URL in `file_data`); a text file as a `text` part (Chat's `file` takes PDF only)."""
    kind = a.kind
    if kind not in files.kinds or (kind == "image" and a.mime_type not in files.image_types):
        raise refuse(files.api, a)
    if a.url is not None and kind not in files.url_kinds:
        raise refuse(files.api, a)
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": a.data_url()}}
    if kind == "audio":
        return {"type": "input_audio", "input_audio": {"data": a.base64(), "format": _AUDIO_FORMAT[a.mime_type]}}
    if kind == "pdf":
        return {"type": "file", "file": {"filename": a.filename or "document.pdf", "file_data": a.data_url()}}
    return {"type": "text", "text": text_of(a)}


_AUDIO_FORMAT = {"audio/wav": "wav", "audio/mpeg": "mp3"}


def to_chat_messages(messages: list[Message], files: ChatFiles = OPENAI_FILES) -> list[dict[str, Any]]:
    """lmstream messages -> Chat Completions `messages` (tool results become `tool` messages)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool" or any(isinstance(c, ToolResult) for c in m.contents):
            for r in m.tool_results:
                out.append({"role": "tool", "tool_call_id": r.id, "content": r.output})
            continue
        calls = [c for c in m.contents if isinstance(c, ToolCall)]
        msg: dict[str, Any] = {"role": m.role}
        if any(isinstance(c, Attachment) for c in m.contents):
            msg["content"] = [
                {"type": "text", "text": c} if isinstance(c, str) else chat_part(c, files)
                for c in m.contents
                if isinstance(c, (str, Attachment)) and c != ""
            ]
        else:
            # "" rather than null beside tool calls: OpenAI takes both, llama_cpp.server's schema
            # refuses null with a 500 (and vLLM/Ollama take "")
            msg["content"] = "".join(c for c in m.contents if isinstance(c, str))
        if calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _json.dumps(c.arguments)}}
                for c in calls
            ]
        out.append(msg)
    return out


class OpenAIChatCompletionsLMInvoker(BaseLMInvoker):
    """`openai-chat/<model>`: OpenAI's Chat Completions API, streamed."""

    provider: ClassVar[str] = "openai-chat"
    billed_as: ClassVar[str | None] = "openai"
    aliases: ClassVar[tuple[str, ...]] = ("openai-chat-completions",)
    tracing_name: ClassVar[str] = "openai"
    env_vars: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    key_required: ClassVar[bool] = True
    #: the extra that installs this adapter's HTTP stack, named when it is missing
    install_extra: ClassVar[str] = "openai"
    #: environment variable that overrides `default_base_url` (None: only `base_url=` does)
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    #: the attachments this server takes (kinds, and which of them as URLs)
    files: ClassVar[ChatFiles] = OPENAI_FILES
    extra_params: ClassVar[ParamTable] = {
        "frequency_penalty": NUMBER,
        "presence_penalty": NUMBER,
        "logit_bias": DICT,
        "logprobs": BOOL,
        "top_logprobs": INT,
        "n": one_of(1, expected="1 (one choice is streamed)"),
        "reasoning_effort": STRING,
        "user": STRING,
        "parallel_tool_calls": BOOL,
        "tool_choice": STRING_OR_DICT,
        "service_tier": STRING,
        "extra_body": Check(DICT.test, "a dict merged into the request body"),
    }

    def __init__(
        self,
        model_name: str,
        *,
        connect_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        response_format_type: str = "json_schema",
        **options: Unpack[InvokerOptions],
    ) -> None:
        base_url = (
            options.get("base_url")
            or (os.environ.get(self.base_url_env) if self.base_url_env else None)
            or self.default_base_url
        )
        if not base_url:
            raise ConfigurationError(
                f"{type(self).__name__} needs a base_url, e.g. config={{'base_url': 'http://127.0.0.1:8000/v1'}}",
                setting="base_url",
            )
        options["base_url"] = base_url.rstrip("/")
        options["api_key"] = resolve_api_key(
            options.get("api_key"), self.env_vars, self.provider, required=self.key_required
        )
        super().__init__(model_name, **options)
        self._url = self._chat_url()
        self._headers = {"content-type": "application/json", "accept": "text/event-stream", **(headers or {})}
        if self._api_key:
            self._headers.update(self._auth_headers(self._api_key))
        self._connect_timeout = connect_timeout
        self._clients = ClientCache(plain_http=self._url.startswith("http://"))
        if response_format_type not in ("json_schema", "json_object"):
            raise ConfigurationError("response_format_type must be 'json_schema' or 'json_object'")
        self.response_format_type = response_format_type

    def _chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def _body(self, messages: list[Message], params: CallParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": to_chat_messages(messages, self.files),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        extra = params.pop("extra_body", None)
        for k, v in params.items():
            body[self.max_tokens_field if k == "max_tokens" else k] = v
        if params.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in params.tools
            ]
        if params.response_schema is not None:
            if self.response_format_type == "json_object":  # llama-cpp-python's server
                body["response_format"] = {"type": "json_object", "schema": params.response_schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": params.response_schema},
                }
        if extra:
            body.update(extra)
        return body

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _status_error(self, status: int, headers: Any, body: bytes, params: CallParams) -> Exception:
        err = error_from_status(self.provider, status, headers, body)
        if (
            status >= 500
            and params.response_schema is not None
            and self.response_format_type == "json_schema"
            and b"json_schema" in body
        ):
            # llama-cpp-python's server rejects this response_format with a 500 and its traceback:
            # the same request would fail again, and the fix is one setting away
            said = str(getattr(err, "message", err)).split("\n\n", 1)[0][:300]
            return ProviderError(
                f"the server does not accept response_format type 'json_schema' ({said}); pass "
                "response_format_type=\"json_object\" (config={'response_format_type': 'json_object'}), "
                "which llama-cpp-python's server understands",
                status_code=status,
                provider=self.provider,
                body=body,
                retryable=False,
            )
        return err

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Any]:
        """One streamed Chat Completions request as normalised deltas (the hot path)."""
        require("httpx", self.install_extra)
        import httpx

        shard = self._clients.acquire()  # released when the stream ends, however it ends
        client = shard.client
        try:
            timeout = httpx.Timeout(
                connect=self._connect_timeout, read=self.retry_config.idle_timeout, write=60.0, pool=60.0
            )
            request = client.build_request(
                "POST",
                self._url,
                content=_json.dumpb(self._body(messages, params.copy())),
                headers=self._headers,
                timeout=timeout,
            )
            where = self._url
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise map_transport_error(self.provider, exc, where) from None
            try:
                if response.status_code >= 400:
                    raise self._status_error(response.status_code, response.headers, await response.aread(), params)
                content_type = response.headers.get("content-type")
                if not is_event_stream(content_type):
                    raise not_a_stream_error(self.provider, response.status_code, content_type, await response.aread())
                loads = _json.loads
                finish: str | None = None
                rid = rmodel = None  # read from the finish chunk only (nothing extra per token)
                async for _event, data in iter_sse(response.aiter_raw()):
                    if data == b"[DONE]":
                        yield FinishDelta(finish, rid, rmodel)
                        return
                    try:
                        chunk = loads(data)
                    except ValueError:
                        raise ProviderError(
                            f"malformed stream chunk from {where}: {data[:200]!r}",
                            provider=self.provider,
                            retryable=False,
                        ) from None
                    choices = chunk.get("choices")
                    if choices:
                        choice = choices[0]
                        delta = choice.get("delta")
                        if delta:
                            content = delta.get("content")
                            if content:
                                yield content
                            if content is None or len(delta) > 1:
                                reasoning = (
                                    delta.get("reasoning_content") or delta.get("reasoning") or delta.get("thinking")
                                )
                                if reasoning:
                                    yield ThinkingDelta(reasoning)
                                calls = delta.get("tool_calls")
                                if calls:
                                    for tc in calls:
                                        fn = tc.get("function") or {}
                                        yield ToolCallDelta(
                                            tc.get("index", 0), tc.get("id"), fn.get("name"), fn.get("arguments") or ""
                                        )
                        reason = choice.get("finish_reason")
                        if reason:
                            finish = _FINISH.get(reason, reason)
                            rid, rmodel = chunk.get("id"), chunk.get("model")
                    elif "error" in chunk:
                        err = chunk["error"]
                        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                        raise ProviderError(f"in-band error: {message}", provider=self.provider, retryable=False)
                    usage = chunk.get("usage")
                    if usage:
                        yield _usage(usage)
                if finish is not None:  # some servers omit [DONE]; a finish_reason is an end marker too
                    yield FinishDelta(finish, rid, rmodel)
            except httpx.HTTPError as exc:
                raise map_transport_error(self.provider, exc, where) from None
            finally:
                await response.aclose()

        finally:
            self._clients.release(shard)


def _usage(u: dict[str, Any]) -> UsageDelta:
    details = u.get("prompt_tokens_details") or {}
    out_details = u.get("completion_tokens_details") or {}
    return UsageDelta(
        u.get("prompt_tokens"),
        u.get("completion_tokens"),
        details.get("cached_tokens"),
        out_details.get("reasoning_tokens"),
    )


class OpenAICompatibleLMInvoker(OpenAIChatCompletionsLMInvoker):
    """`openai-compatible/<model>` with `config={"base_url": ...}`: vLLM, Ollama, llama.cpp, LM Studio.

    The API key is optional (`OPENAI_COMPATIBLE_API_KEY`, then `OPENAI_API_KEY`). Structured
    output is sent as `json_schema` (vLLM, Ollama, LM Studio, llama.cpp's llama-server); for
    llama-cpp-python's server pass `config={"response_format_type": "json_object"}`.
    """

    provider: ClassVar[str] = "openai-compatible"
    aliases: ClassVar[tuple[str, ...]] = ()
    tracing_name_from_host: ClassVar[bool] = True  # it speaks OpenAI's API; the host may say whose
    env_vars: ClassVar[tuple[str, ...]] = ("OPENAI_COMPATIBLE_API_KEY", "OPENAI_API_KEY")
    default_base_url: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False
    max_tokens_field: ClassVar[str] = "max_tokens"
    extra_params: ClassVar[ParamTable] = {
        **OpenAIChatCompletionsLMInvoker.extra_params,
        "top_k": INT,
        "min_p": NUMBER,
        "repeat_penalty": NUMBER,
    }
    #: a final assistant message is continued: vLLM's `continue_final_message`, which
    #: llama.cpp's server does by itself for a final assistant message
    continues_prefix: ClassVar[bool] = True

    def _body(self, messages: list[Message], params: CallParams) -> dict[str, Any]:
        body = super()._body(messages, params)
        if messages and messages[-1].role == "assistant":
            body.setdefault("continue_final_message", True)
            body.setdefault("add_generation_prompt", False)
        return body
