"""Tools from Model Context Protocol servers, through the official `mcp` SDK (extra `lmstream[mcp]`).

    async with MCPTools.stdio("python", ["-m", "my_server"]) as tools:
        lmrp = LMRequestProcessor(builder, invoker, tools=[*tools, get_weather])

The SDK is imported when a connection opens, so `import lmstream` stays fast. Calls stream like
other tools: MCP progress notifications become `tool_progress` events; an MCP error result, a
server that died, or one that did not answer within `timeout` becomes a tool error for the model
(the request goes on); a cancelled request cancels the MCP call (`notifications/cancelled`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from . import _json
from .errors import ConfigurationError, ToolError
from .tools import Approval, Tool, ToolOutput, progress_reporter

__all__ = ["MCPToolError", "MCPTools", "MCPToolset"]

logger = logging.getLogger("lmstream.mcp")


class MCPToolError(ToolError):
    """An MCP tool call failed: an error result, a dead or silent server. The model sees the text."""


class MCPToolset(list[Tool[..., Any]]):
    """The server's tools as `Tool`s (a list: pass it, or `*` it, into `tools=[...]`).

    The list is refreshed in place when the server says its tool list changed; `on_change(fn)`
    registers `fn(toolset)` to run after each refresh (e.g. to `set_tools` again)."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[MCPToolset], Any]] = []

    def on_change(self, listener: Callable[[MCPToolset], Any]) -> None:
        self._listeners.append(listener)


def _import_mcp() -> Any:
    try:
        import mcp
        import mcp.client.stdio
        import mcp.client.streamable_http
    except ImportError:
        raise ConfigurationError("MCP tools need the official MCP SDK: pip install 'lmstream[mcp]'") from None
    return mcp


_BAD_NAME = re.compile(r"[^A-Za-z0-9_-]")


class MCPTools:
    """One MCP server connection; `async with` it for an `MCPToolset`.

    `prefix` goes before every tool name (to keep two servers' tools apart); `requires_approval`
    is applied to each tool (`True`, a function of the call, or a set of the tools' names);
    `timeout` bounds each call and listing, `connect_timeout` starting the server (seconds)."""

    def __init__(
        self,
        connect: Callable[[Any, AsyncExitStack], Any],
        label: str,
        *,
        prefix: str = "",
        requires_approval: Approval | Sequence[str] = False,
        timeout: float = 60.0,
        connect_timeout: float = 30.0,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0:
            raise ConfigurationError("MCPTools timeout and connect_timeout must be > 0 seconds")
        self.connect_timeout = connect_timeout
        self._connect = connect
        self.label = label
        self.prefix = prefix
        self.requires_approval = requires_approval
        self.timeout = timeout
        self.tools = MCPToolset()
        self._session: Any = None
        self._stack: AsyncExitStack | None = None
        self._refresh: asyncio.Task[None] | None = None

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | None = None,
        **options: Any,
    ) -> MCPTools:
        """A server run as a subprocess speaking MCP over its stdin/stdout."""

        async def connect(mcp: Any, stack: AsyncExitStack) -> tuple[Any, Any]:
            params = mcp.client.stdio.StdioServerParameters(
                command=command, args=list(args), env=dict(env) if env is not None else None, cwd=cwd
            )
            streams = await stack.enter_async_context(mcp.client.stdio.stdio_client(params))
            return streams[0], streams[1]

        return cls(connect, f"stdio:{command}", **options)

    @classmethod
    def http(cls, url: str, headers: Mapping[str, str] | None = None, **options: Any) -> MCPTools:
        """A server at a streamable-HTTP endpoint (`http://127.0.0.1:8000/mcp`). `headers` (e.g. a
        bearer token) go with every request and never into events or errors."""

        async def connect(mcp: Any, stack: AsyncExitStack) -> tuple[Any, Any]:
            from mcp.shared._httpx_utils import create_mcp_http_client

            client = await stack.enter_async_context(create_mcp_http_client(headers=dict(headers or {})))
            streams = await stack.enter_async_context(
                mcp.client.streamable_http.streamable_http_client(url, http_client=client)
            )
            return streams[0], streams[1]

        parts = urlsplit(url)  # the label goes into errors: never a password or a query token
        return cls(connect, f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}", **options)

    def __repr__(self) -> str:
        return f"MCPTools({self.label!r}, tools={[t.name for t in self.tools]})"

    async def __aenter__(self) -> MCPToolset:
        mcp = _import_mcp()
        stack = AsyncExitStack()
        try:
            async with asyncio.timeout(self.connect_timeout):
                read, write = await self._connect(mcp, stack)
                session = mcp.ClientSession(read, write, message_handler=self._on_message)
                self._session = await stack.enter_async_context(session)
                await session.initialize()
                await self._list()
        except BaseException as exc:
            await _close_quietly(stack)
            if isinstance(exc, TimeoutError):
                raise MCPToolError(f"MCP server {self.label} did not start within {self.connect_timeout}s") from None
            raise
        self._stack = stack
        return self.tools

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            await _close_quietly(stack)

    async def refresh(self) -> MCPToolset:
        """List the server's tools again (done by itself when the server says they changed)."""
        await self._list()
        for listener in list(self.tools._listeners):
            result = listener(self.tools)
            if asyncio.iscoroutine(result):
                await result
        return self.tools

    async def _list(self) -> None:
        tools: list[Tool[..., Any]] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the listing
            params = {"cursor": cursor} if cursor else None
            result = await asyncio.wait_for(self._session.list_tools(params=_page(params)), self.timeout)
            tools.extend(self._tool(t) for t in result.tools)
            cursor = getattr(result, "next_cursor", None)
            if not cursor:
                break
        self.tools[:] = tools

    async def _on_message(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._refresh_quietly())
        elif isinstance(message, Exception):
            logger.warning("MCP server %s: transport error: %s", self.label, message)

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:
            logger.warning("MCP server %s: could not list its tools again: %s", self.label, exc)

    def _tool(self, mcp_tool: Any) -> Tool[..., Any]:
        remote = str(mcp_tool.name)
        name = _BAD_NAME.sub("_", f"{self.prefix}{remote}")[:64]
        schema = dict(getattr(mcp_tool, "input_schema", None) or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        wanted = self.requires_approval
        approval: Approval
        if isinstance(wanted, bool) or callable(wanted):
            approval = wanted
        else:  # a collection of names (ours with the prefix, or the server's)
            approval = name in wanted or remote in wanted

        async def call(**arguments: Any) -> ToolOutput:
            return await self._call(remote, arguments)

        return Tool(name, str(getattr(mcp_tool, "description", "") or ""), schema, call, approval)

    async def _call(self, remote: str, arguments: dict[str, Any]) -> ToolOutput:
        session = self._session
        if session is None:
            raise MCPToolError(f"the MCP connection to {self.label} is closed")
        report = progress_reporter()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            try:
                await report(progress, total, message)
            except Exception:
                logger.debug("tool_progress event could not be delivered", exc_info=True)

        try:
            result = await asyncio.wait_for(
                session.call_tool(remote, arguments, progress_callback=on_progress), self.timeout
            )
        except TimeoutError:
            raise MCPToolError(f"MCP server {self.label} did not answer {remote!r} within {self.timeout}s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the server died, or answered with a protocol error
            raise MCPToolError(f"MCP server {self.label} failed on {remote!r}: {exc}") from None
        return _output(result)


def _page(params: dict[str, Any] | None) -> Any:
    if params is None:
        return None
    from mcp import types

    return types.PaginatedRequestParams(**params)


def _output(result: Any) -> ToolOutput:
    """An MCP result as text for the model and a value for the `tool_result` event."""
    texts: list[str] = []
    items: list[dict[str, Any]] = []
    for c in getattr(result, "content", None) or []:
        kind = getattr(c, "type", "")
        if kind == "text":
            texts.append(c.text)
            items.append({"type": "text", "text": c.text})
        elif kind in ("image", "audio"):
            texts.append(f"[{kind} {c.mime_type}, {len(c.data) * 3 // 4} bytes]")
            items.append({"type": kind, "mime_type": c.mime_type, "data": c.data})
        else:
            dumped = c.model_dump(mode="json", exclude_none=True) if hasattr(c, "model_dump") else {"type": kind}
            items.append(dumped)
            texts.append(_json.dumps(dumped))
    text = "\n".join(texts)
    if getattr(result, "is_error", False):
        raise MCPToolError(text or "the MCP tool reported an error")
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return ToolOutput(text or _json.dumps(structured), structured)
    if all(i["type"] == "text" for i in items):
        return ToolOutput(text, text)
    return ToolOutput(text, items)


async def _close_quietly(stack: AsyncExitStack) -> None:
    """Close the connection; a server that already died must not fail the caller's exit."""
    try:
        await stack.aclose()
    except Exception as exc:
        logger.debug("MCP connection closed with an error: %s", exc)
