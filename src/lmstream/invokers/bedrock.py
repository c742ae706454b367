"""Amazon Bedrock's Converse stream API (ConverseStream) through boto3/botocore.

botocore is blocking, so each stream runs its HTTP request and event iteration in a worker
thread of its own (`_aws.iterate_in_thread`) that hands parsed events to the event loop; the
loop never waits on a socket, and cancelling closes the connection at once. botocore retries
are off: lmstream retries, only before the first token.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Unpack

from .. import _json
from ..errors import ConfigurationError
from ..prompt import Message
from ..types import Attachment, ThinkingBlock, ToolCall, ToolResult
from ._aws import Secret, iterate_in_thread, map_aws_error
from ._files import refuse
from ._http import not_a_stream_error
from ._sdk import split_turns
from .base import BaseLMInvoker, CallParams, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .options import InvokerOptions
from .params import DICT, INT, Check, ParamTable

__all__ = ["BedrockLMInvoker", "to_converse"]

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}
_IMAGE = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCS = {"application/pdf": "pdf", "text/csv": "csv", "text/plain": "txt", "text/markdown": "md"}


def converse_block(a: Attachment) -> dict[str, Any]:
    """Converse's `image` (png, jpeg, gif, webp) or `document` (pdf, txt, md, csv) block, bytes
    in `source.bytes` (base64 on the wire); Converse reads only S3 locations, so no URLs."""
    if a.url is None and a.mime_type in _IMAGE:
        return {"image": {"format": _IMAGE[a.mime_type], "source": {"bytes": a.data}}}
    if a.url is None and a.mime_type in _DOCS:
        # a document name: letters, digits, single spaces, hyphens, parentheses, brackets
        stem = (a.filename or "document").rsplit(".", 1)[0]
        name = "".join(ch if ch.isalnum() else "-" for ch in stem) or "document"
        return {"document": {"format": _DOCS[a.mime_type], "name": name, "source": {"bytes": a.data}}}
    raise refuse("Bedrock Converse", a)


def _blocks(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in m.contents:
        if isinstance(c, str):
            if c:
                out.append({"text": c})
        elif isinstance(c, ThinkingBlock):
            if c.signature:  # unsigned reasoning (another provider's) cannot be replayed
                out.append({"reasoningContent": {"reasoningText": {"text": c.text, "signature": c.signature}}})
        elif isinstance(c, ToolCall):
            out.append({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}})
        elif isinstance(c, ToolResult):
            status = "error" if c.is_error else "success"
            content = [{"text": c.output or "(empty)"}]  # Bedrock rejects an empty text block
            out.append({"toolResult": {"toolUseId": c.id, "content": content, "status": status}})
        elif isinstance(c, Attachment):
            out.append(converse_block(c))
    return out


def to_converse(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """lmstream messages -> Converse (`system` blocks, alternating `messages`)."""
    system, turns = split_turns(messages, "assistant", _blocks, "content")
    return ([{"text": system}] if system else []), turns


class BedrockLMInvoker(BaseLMInvoker):
    """`bedrock/<model-id>` (e.g. `bedrock/anthropic.claude-3-5-haiku-20241022-v1:0`, or an
    inference profile such as `us.anthropic...`).

    Credentials: the standard AWS chain (environment, `AWS_PROFILE`/`profile_name=`, config files,
    instance roles), or a Bedrock API key as `api_key=` / `AWS_BEARER_TOKEN_BEDROCK`. Region:
    `region=`, else `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile's. `base_url` is the
    endpoint URL (a VPC endpoint, a proxy). Thinking (Claude): `hyperparameters={"thinking":
    {"type": "enabled", "budget_tokens": N}}`; other model fields via
    `additional_model_request_fields`.
    """

    provider: ClassVar[str] = "bedrock"
    billed_as: ClassVar[str | None] = "aws"
    tracing_name: ClassVar[str] = "aws.bedrock"
    extra_params: ClassVar[ParamTable] = {
        "top_k": INT,
        "thinking": Check(DICT.test, "a dict such as {'type': 'enabled', 'budget_tokens': 2048}"),
        "additional_model_request_fields": DICT,
        "tool_choice": Check(DICT.test, "a dict such as {'auto': {}}"),
        "guardrail_config": DICT,
        "performance_config": Check(DICT.test, "a dict such as {'latency': 'optimized'}"),
        "request_metadata": Check(DICT.test, "a dict of strings"),
    }

    def __init__(
        self,
        model_name: str,
        *,
        region: str | None = None,
        profile_name: str | None = None,
        connect_timeout: float = 10.0,
        **options: Unpack[InvokerOptions],
    ) -> None:
        super().__init__(model_name, **options)
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.profile_name = profile_name
        self._connect_timeout = connect_timeout
        self._client: Any = None
        self._client_lock = threading.Lock()

    def endpoint(self) -> str | None:
        if self.base_url or not self.region:
            return self.base_url
        return f"https://bedrock-runtime.{self.region}.amazonaws.com"

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config
        except ImportError as exc:
            raise ConfigurationError("boto3 is not installed; run: pip install 'lmstream[bedrock]'") from exc
        session = boto3.session.Session(profile_name=self.profile_name, region_name=self.region)
        if not session.region_name:
            raise ConfigurationError(
                "no AWS region for Bedrock: set AWS_REGION (or AWS_DEFAULT_REGION), or pass config={'region': ...}"
            )
        opts: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},  # lmstream retries
            "connect_timeout": self._connect_timeout,
            # lmstream's own idle timer reports a stall; the socket's timeout only frees the thread after it
            "read_timeout": (self.retry_config.idle_timeout + 5.0) if self.retry_config.idle_timeout else 300,
            "max_pool_connections": 64,
            "user_agent_extra": "lmstream",
        }
        if self._api_key:
            opts["signature_version"] = UNSIGNED  # a Bedrock API key replaces SigV4
        client = session.client("bedrock-runtime", endpoint_url=self.base_url, config=Config(**opts))
        if self._api_key:
            key = self._api_key

            def bearer(request: Any, **_: Any) -> None:
                request.headers["Authorization"] = Secret(f"Bearer {key}")

            client.meta.events.register("before-send.bedrock-runtime.ConverseStream", bearer)
        return client

    def _get_client(self) -> Any:
        """One client per invoker (botocore clients are thread-safe), built in a worker thread."""
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    async def aclose(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _request(self, messages: list[Message], params: CallParams) -> dict[str, Any]:
        system, turns = to_converse(messages)
        req: dict[str, Any] = {"modelId": self.model_name, "messages": turns}
        if system:
            req["system"] = system
        if "seed" in params:
            raise ConfigurationError("Bedrock Converse has no 'seed'; remove it from the hyperparameters")
        inference: dict[str, Any] = {}
        for ours, theirs in (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP")):
            if ours in params:
                inference[theirs] = params[ours]
        if "stop" in params:
            stop = params["stop"]
            inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        if inference:
            req["inferenceConfig"] = inference
        extra = dict(params.get("additional_model_request_fields") or {})
        if "thinking" in params:
            extra["thinking"] = params["thinking"]
        if "top_k" in params:
            extra["top_k"] = params["top_k"]
        if extra:
            req["additionalModelRequestFields"] = extra
        for ours, theirs in (
            ("guardrail_config", "guardrailConfig"),
            ("performance_config", "performanceConfig"),
            ("request_metadata", "requestMetadata"),
        ):
            if ours in params:
                req[theirs] = params[ours]
        if params.tools:
            specs = []
            for t in params.tools:
                spec: dict[str, Any] = {"name": t.name, "inputSchema": {"json": t.parameters}}
                if t.description:  # Bedrock rejects an empty description
                    spec["description"] = t.description
                specs.append({"toolSpec": spec})
            tool_config: dict[str, Any] = {"tools": specs}
            if "tool_choice" in params:
                tool_config["toolChoice"] = params["tool_choice"]
            req["toolConfig"] = tool_config
        if params.response_schema is not None:
            schema = {"schema": _json.dumps(params.response_schema), "name": "response"}
            req["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
        return req

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Any]:
        req = self._request(messages, params.copy())
        client = self._client
        if client is None:  # loading botocore's service model takes a while: not on the loop
            try:
                client = await asyncio.to_thread(self._get_client)
            except Exception as exc:
                raise map_aws_error(self.provider, exc) from None
        kinds: dict[int, str] = {}
        provider = self.provider
        events = iterate_in_thread(lambda: _open_stream(client, req, provider), f"lmstream-bedrock-{self.model_name}")
        try:
            async for event in events.items(self.retry_config.idle_timeout, self.provider):
                for delta in _deltas(event, kinds):
                    yield delta
        finally:
            events.close()


def _open_stream(client: Any, req: dict[str, Any], provider: str) -> Any:
    """Start ConverseStream; a 200 reply that is a document, not an event stream, is reported
    with the server's own words (botocore would fail on it with a checksum error)."""
    response = client.converse_stream(**req)
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    content_type = headers.get("content-type")
    stream = response["stream"]
    if content_type and "eventstream" not in content_type.lower():
        raw = getattr(stream, "_raw_stream", None)
        try:
            body = raw.read(65536) if raw is not None else b""
        finally:
            stream.close()
        raise not_a_stream_error(provider, 200, content_type, body)
    return stream


def _deltas(event: dict[str, Any], kinds: dict[int, str]) -> list[Any]:
    """One parsed ConverseStream event -> lmstream deltas."""
    if "contentBlockDelta" in event:
        ev = event["contentBlockDelta"]
        d = ev["delta"]
        index = ev.get("contentBlockIndex", 0)
        if "text" in d:
            return [d["text"]]
        if "reasoningContent" in d:
            kinds[index] = "reasoning"
            r = d["reasoningContent"]
            return [ThinkingDelta(r.get("text", ""), signature=r.get("signature"))]
        if "toolUse" in d:
            return [ToolCallDelta(index, arguments=d["toolUse"].get("input", ""))]
        return []
    if "contentBlockStart" in event:
        ev = event["contentBlockStart"]
        tool = ev.get("start", {}).get("toolUse")
        if tool is not None:
            index = ev.get("contentBlockIndex", 0)
            kinds[index] = "tool"
            return [ToolCallDelta(index, tool.get("toolUseId"), tool.get("name"))]
        return []
    if "contentBlockStop" in event:
        if kinds.get(event["contentBlockStop"].get("contentBlockIndex", 0)) == "reasoning":
            return [ThinkingDelta(end=True)]
        return []
    if "messageStop" in event:
        reason = event["messageStop"].get("stopReason")
        return [FinishDelta(_STOP.get(reason, reason) if reason else None)]  # None: cut short
    if "metadata" in event:
        u = event["metadata"].get("usage") or {}
        cached = u.get("cacheReadInputTokens") or 0
        written = u.get("cacheWriteInputTokens") or 0
        return [UsageDelta((u.get("inputTokens") or 0) + cached + written, u.get("outputTokens"), cached)]
    return []  # messageStart and events newer than this code
