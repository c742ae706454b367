"""Google Gemini through the official `google-genai` SDK, streamed (streamGenerateContent, SSE)."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar, Unpack

from .. import _json
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from ._http import _ssl_context
from ._sdk import SDKLMInvoker, check_stream_response, split_turns
from ._sdk_errors import ErrorTable, status_error
from .base import CallParams, FileDelta, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .options import InvokerOptions
from .params import BOOL, INT, NUMBER, Check, ParamTable

__all__ = ["GoogleLMInvoker"]

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "OTHER": "other",
    "FINISH_REASON_UNSPECIFIED": "",
}


def _parts(m: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for c in m.contents:
        if isinstance(c, str):
            if c:
                parts.append({"text": c})
        elif isinstance(c, ToolCall):
            part: dict[str, Any] = {"function_call": {"name": c.name, "args": c.arguments}}
            if c.signature:  # Gemini rejects a replayed call without its thought signature
                part["thought_signature"] = c.signature
            parts.append(part)
        elif isinstance(c, ToolResult):
            result = {"error" if c.is_error else "output": c.output}
            parts.append({"function_response": {"name": c.name, "response": result}})
        elif isinstance(c, Attachment):
            parts.append(gemini_part(c))
    return parts


#: Gemini's documented names where they differ from the sniffed type
_GEMINI_TYPES = {"audio/mpeg": "audio/mp3", "text/markdown": "text/plain"}


def _b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


def gemini_part(a: Attachment) -> dict[str, Any]:
    """`inline_data` (base64 bytes) or, for a URL, `file_data` with `file_uri` (Gemini and Vertex
    AI fetch it themselves: gs:// on Vertex, http(s) and Files API URIs on the Gemini API)."""
    mime = _GEMINI_TYPES.get(a.mime_type, a.mime_type)
    if a.url is not None:
        return {"file_data": {"mime_type": mime, "file_uri": a.url}}
    return {"inline_data": {"mime_type": mime, "data": a.base64()}}


def to_gemini(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """System text apart; assistant -> role "model"; tool results -> functionResponse parts."""
    return split_turns(messages, "model", _parts, "parts")


class GoogleLMInvoker(SDKLMInvoker):
    """`google/<model>` (Gemini API). Key from `GOOGLE_API_KEY` or `GEMINI_API_KEY`.

    Thinking: `hyperparameters={"thinking_budget": N}` (thoughts are streamed as `thinking`).
    Vertex AI: `config={"vertexai": True, "project": ..., "location": ...}` authenticates with
    Application Default Credentials, or `google_credentials=` (a google.auth Credentials), or
    an OAuth2 `access_token=` (`credentials=` is taken as one); without a project an API key
    means Vertex AI express mode.
    """

    provider: ClassVar[str] = "google"
    billed_as: ClassVar[str | None] = "google"
    tracing_name: ClassVar[str] = "gcp.gemini"
    tracing_name_from_host: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    system_apart: ClassVar[bool] = True
    env_vars: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    sdk_module: ClassVar[str] = "google.genai"
    sdk_distribution: ClassVar[str] = "google-genai"
    sdk_extra: ClassVar[str] = "google"
    extra_params: ClassVar[ParamTable] = {
        "top_k": INT,
        "thinking_budget": INT,
        "include_thoughts": BOOL,
        #: ["TEXT", "IMAGE"] on image output models: their images stream back as `file` events
        "response_modalities": Check(
            lambda v: isinstance(v, list) and all(x in ("TEXT", "IMAGE", "AUDIO") for x in v),
            'a list of "TEXT", "IMAGE", "AUDIO"',
        ),
        "presence_penalty": NUMBER,
        "frequency_penalty": NUMBER,
    }

    def __init__(
        self,
        model_name: str,
        *,
        api_version: str | None = None,
        vertexai: bool = False,
        project: str | None = None,
        location: str | None = None,
        access_token: str | None = None,
        google_credentials: Any = None,
        connect_timeout: float = 10.0,
        **options: Unpack[InvokerOptions],
    ) -> None:
        self.key_required = not vertexai
        explicit_key = options.get("api_key")
        super().__init__(model_name, connect_timeout=connect_timeout, **options)
        if vertexai and not explicit_key:
            self._api_key = None  # Vertex authenticates with Google credentials, not GOOGLE_API_KEY
        self.api_version = api_version or ("v1beta1" if vertexai else "v1beta")
        self.vertexai = vertexai
        self.project = project
        self.location = location
        self._access_token = access_token
        self._google_credentials = google_credentials
        self._http: Any = None  # the httpx clients handed to the SDK (one pair per SDK client)
        self._sync_http: Any = None

    def endpoint(self) -> str | None:
        if self.vertexai and not self.base_url:
            return f"https://{self.location + '-' if self.location else ''}aiplatform.googleapis.com"
        return super().endpoint()

    @property
    def install_extra(self) -> str:
        return "vertex" if self.vertexai else self.sdk_extra

    def traced_provider(self, host_says: str | None) -> str:
        return "gcp.vertex_ai" if self.vertexai else super().traced_provider(host_says)

    def _make_client(self) -> Any:
        genai = self._sdk()
        from google.genai import types

        # SDK retries off (lmstream retries only before the first token). Without this the
        # aiohttp path sleeps 1-10 s and retries once on any connection error, per attempt.
        opts: dict[str, Any] = {"api_version": self.api_version, "retry_options": types.HttpRetryOptions(attempts=1)}
        if self.base_url:
            opts["base_url"] = self.base_url
        # lmstream's own httpx client: its response hook sees the reply before the SDK parses
        # it (the SDK's stream hides the response), so a JSON or HTML page that came with 200
        # is reported with the server's message instead of failing inside the SDK's parser.
        import httpx

        provider = self.provider

        async def check(response: httpx.Response) -> None:
            if response.status_code < 300:
                await check_stream_response(provider, response)

        timeout = httpx.Timeout(
            connect=self._connect_timeout, read=self.retry_config.idle_timeout, write=60.0, pool=60.0
        )
        self._http = httpx.AsyncClient(timeout=timeout, verify=_ssl_context(), event_hooks={"response": [check]})
        opts["httpx_async_client"] = self._http
        # with both clients given the SDK builds no TLS context of its own (~100 ms each)
        self._sync_http = opts["httpx_client"] = httpx.Client(timeout=timeout, verify=_ssl_context())
        if not self.vertexai:
            return genai.Client(api_key=self._api_key, http_options=types.HttpOptions(**opts))
        vertex: dict[str, Any] = {"vertexai": True, "http_options": types.HttpOptions(**opts)}
        token = self._access_token or (self._api_key if self.project else None)
        if self._google_credentials is not None:
            vertex["credentials"] = self._google_credentials
        elif token:
            from google.oauth2.credentials import Credentials

            vertex["credentials"] = Credentials(token)  # type: ignore[no-untyped-call]
        elif self._api_key:
            vertex["api_key"] = self._api_key  # express mode
        if self.project:
            vertex["project"] = self.project
        if self.location:
            vertex["location"] = self.location
        return genai.Client(**vertex)

    async def _close_client(self, client: Any) -> None:
        await client.aio.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._sync_http.close()

    def _config(self, system: str, params: CallParams) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        if system:
            cfg["system_instruction"] = system
        names = {
            "max_tokens": "max_output_tokens",
            "temperature": "temperature",
            "top_p": "top_p",
            "seed": "seed",
            "top_k": "top_k",
            "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty",
            "response_modalities": "response_modalities",
        }
        for k, v in params.items():
            if k == "stop":
                cfg["stop_sequences"] = [v] if isinstance(v, str) else list(v)
            elif k in names:
                cfg[names[k]] = v
        budget = params.get("thinking_budget")
        include = params.get("include_thoughts", budget is not None and budget != 0)
        if budget is not None or include:
            tc: dict[str, Any] = {"include_thoughts": include}
            if budget is not None:
                tc["thinking_budget"] = budget
            cfg["thinking_config"] = tc
        if params.tools:
            cfg["tools"] = [
                {
                    "function_declarations": [
                        {"name": t.name, "description": t.description, "parameters_json_schema": t.parameters}
                        for t in params.tools
                    ]
                }
            ]
        if params.response_schema is not None:
            cfg["response_mime_type"] = "application/json"
            cfg["response_json_schema"] = params.response_schema
        return cfg

    def _error_table(self) -> ErrorTable:
        from google.genai import errors

        # its transport is lmstream's httpx client (see _make_client), whose errors are mapped too
        return {errors.APIError: status_error}  # .code is the HTTP status; UnknownApiResponseError is a ValueError

    async def _open(self, client: Any, messages: list[Message], params: CallParams) -> Any:
        system, contents = to_gemini(messages)
        return await client.aio.models.generate_content_stream(
            model=self.model_name, contents=contents, config=self._config(system, params)
        )

    def _http_response(self, stream: Any) -> Any:
        return None  # hidden by the SDK; the httpx response hook checks it instead

    async def _close_stream(self, stream: Any) -> None:
        await stream.aclose()  # an async generator: closing it releases the response

    async def _translate(self, events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        finish: str | None = None
        rid = rmodel = None
        n_calls = 0
        n_files = 0
        in_thought = False
        async for chunk in events:
            for cand in (chunk.candidates or [])[:1]:
                content = cand.content
                for part in content.parts if content and content.parts else []:
                    if part.thought:
                        if part.text:
                            in_thought = True
                            yield ThinkingDelta(part.text)
                        continue
                    if in_thought:
                        in_thought = False
                        yield ThinkingDelta(end=True)
                    if part.text:
                        yield part.text
                    blob = part.inline_data
                    if blob is not None and blob.data:  # an image the model made (image output models)
                        mime = blob.mime_type or "application/octet-stream"
                        yield FileDelta(f"part_{n_files}", mime, data=_b64(blob.data))
                        n_files += 1
                    fc = part.function_call
                    if fc is not None:
                        yield ToolCallDelta(
                            n_calls,
                            fc.id or f"call_{n_calls}",
                            fc.name,
                            _json.dumps(dict(fc.args or {})),
                            part.thought_signature,
                        )
                        n_calls += 1
                if cand.finish_reason:
                    reason = getattr(cand.finish_reason, "value", cand.finish_reason)
                    # FINISH_REASON_UNSPECIFIED ends the stream without saying why: "" (cut short)
                    finish = _FINISH.get(str(reason), str(reason).lower())
                    rid, rmodel = chunk.response_id, chunk.model_version
            u = chunk.usage_metadata
            if u is not None:
                yield UsageDelta(
                    u.prompt_token_count,
                    (u.candidates_token_count or 0) + (u.thoughts_token_count or 0),
                    u.cached_content_token_count,
                    u.thoughts_token_count,
                )
        if finish is not None:
            yield FinishDelta(finish or None, rid, rmodel)
