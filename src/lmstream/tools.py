"""Tools the model may call: plain Python functions or explicit schemas."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from . import _json, _observe
from ._tool_schema import param_schema, parse_docstring
from .errors import ConfigurationError
from .event_values import ToolProgressValue
from .types import ToolCall, ToolResult

__all__ = [
    "Tool",
    "ToolOutput",
    "to_tool",
    "tool",
    "execute_tool_calls",
    "current_tool_call",
    "progress_reporter",
    "report_progress",
]

#: per call: True, False, or a function of the call that decides
Approval = bool | Callable[[ToolCall], bool]


P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool may return to tell the model `text` while the `tool_result` event carries
    `value` (e.g. an image's data for a browser, with a short description for the model)."""

    text: str
    value: Any = None


@dataclass(slots=True)
class Tool(Generic[P, R]):
    """A callable tool: name, description, JSON-schema `parameters` and the function to run.

    Calling the tool calls its function, with the function's own signature (so `@tool` keeps
    what an editor and mypy know about it).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    func: Callable[P, R] | None = None
    #: a person approves each call first (`True`), or a function of the call decides per call
    requires_approval: Approval = False

    def needs_approval(self, call: ToolCall) -> bool:
        """Whether this call waits for a person; a deciding function that raises means yes."""
        decide = self.requires_approval
        if not callable(decide):
            return bool(decide)
        try:
            return bool(decide(call))
        except Exception:
            return True  # fail closed: a broken policy never lets a sensitive call through

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.func is None:
            raise ConfigurationError(f"tool {self.name!r} has no function to call")
        return self.func(*args, **kwargs)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name or ""):
            raise ConfigurationError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-' (providers reject others)"
            )
        if not isinstance(self.parameters, dict) or self.parameters.get("type", "object") != "object":
            raise ConfigurationError(f"tool {self.name!r}: parameters must be a JSON schema of type 'object'")

    async def run(self, arguments: dict[str, Any]) -> Any:
        func = cast("Callable[..., Any] | None", self.func)  # arguments come from the model, by name
        if func is None:
            raise ConfigurationError(f"tool {self.name!r} has no function to execute")
        if inspect.iscoroutinefunction(func):
            return await func(**arguments)
        result = await asyncio.to_thread(func, **arguments)
        if inspect.isawaitable(result):
            result = await result
        return result


@overload
def tool(
    func: Callable[P, R],
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: Approval = False,
) -> Tool[P, R]: ...


@overload
def tool(
    func: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: Approval = False,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    func: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: Approval = False,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Decorator form of `to_tool` that lets you override the name or description, and mark the
    tool as needing a person's approval before each call (`requires_approval=True`, or a function
    `(ToolCall) -> bool` deciding per call)."""

    def wrap(f: Callable[P, R]) -> Tool[P, R]:
        if isinstance(f, Tool):
            return Tool(
                name or f.name,
                description or f.description,
                f.parameters,
                f.func,
                requires_approval or f.requires_approval,
            )
        t = cast("Tool[P, R]", _from_function(f, name, description))  # the name is validated like any other
        t.requires_approval = requires_approval
        return t

    return wrap(func) if func is not None else wrap


def to_tool(obj: Any) -> Tool[..., Any]:
    """Accept a `Tool`, a `{"name","description","parameters"}` dict or a function."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, dict):
        try:
            return Tool(
                obj["name"],
                obj.get("description", ""),
                obj.get("parameters") or {"type": "object", "properties": {}},
                obj.get("func"),
                obj.get("requires_approval", False),
            )
        except KeyError:
            raise ConfigurationError("a tool given as a dict needs at least a 'name'") from None
    if callable(obj):
        return _from_function(obj)
    raise ConfigurationError(f"cannot make a tool from {type(obj).__name__}; pass a function, a Tool or a dict")


def _from_function(func: Callable[..., Any], name: str | None = None, description: str | None = None) -> Tool[..., Any]:
    doc_description, param_docs = parse_docstring(inspect.getdoc(func) or "")
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, p in inspect.signature(func).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        prop = param_schema(hints.get(pname, p.annotation))
        if pname in param_docs:
            prop["description"] = param_docs[pname]
        if p.default is inspect.Parameter.empty:
            required.append(pname)
        elif p.default is not None and _json_safe(p.default):
            prop["default"] = p.default
        properties[pname] = prop
    params: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        params["required"] = required
    return Tool(name or str(getattr(func, "__name__", "tool")), description or doc_description, params, func)


def _json_safe(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, list, dict))


def _stringify(result: Any) -> str:
    if isinstance(result, str):
        return result
    if hasattr(result, "model_dump_json"):
        return str(result.model_dump_json())
    return _json.dumps(result)


_call: contextvars.ContextVar[ToolCall | None] = contextvars.ContextVar("lmstream_tool_call", default=None)


def current_tool_call() -> ToolCall | None:
    """The call this tool function is running for (set while the tool loop runs it)."""
    return _call.get()


Progress = Callable[[float, "float | None", "str | None"], Awaitable[None]]


def progress_reporter() -> Progress:
    """`report_progress` bound to the running call now, for a callback that runs in another task
    (an MCP client's receive loop). Outside the tool loop it does nothing."""
    from .engine.lifecycle import current_request
    from .events import EventLevel, EventType

    call, ctx = _call.get(), current_request()

    async def report(progress: float, total: float | None = None, message: str | None = None) -> None:
        if call is None or ctx is None:
            return
        value: ToolProgressValue = {
            "tool_call_id": call.id,
            "name": call.name,
            "progress": progress,
            "total": total,
            "message": message,
        }
        await ctx.emit(value, EventType.TOOL_PROGRESS, EventLevel.INFO, step=ctx.step)

    return report


async def report_progress(progress: float, total: float | None = None, message: str | None = None) -> None:
    """Emit a `tool_progress` event for the running call (a no-op outside the tool loop)."""
    await progress_reporter()(progress, total, message)


async def execute_tool_calls(tools: list[Tool[..., Any]], calls: list[ToolCall]) -> list[ToolResult]:
    """Run the calls concurrently. A tool that raises becomes an error result for the model."""
    by_name = {t.name: t for t in tools}
    obs = _observe.current()  # observability seam (lmstream.otel): a span per tool run; None when tracing is off

    async def one(call: ToolCall) -> ToolResult:
        t = by_name.get(call.name)
        _call.set(call)  # gather runs each call in a task of its own, so this stays per call
        span = obs.tool_started(call, t) if obs is not None else None
        try:
            result, error = await _run_one(t, call, by_name)
        except BaseException as exc:  # cancelled
            if span is not None:
                span.end(None, exc)
            raise
        if span is not None:
            span.end(result, error)
        return result

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _run_one(
    t: Tool[..., Any] | None, call: ToolCall, by_name: dict[str, Tool[..., Any]]
) -> tuple[ToolResult, Exception | None]:
    """The result for the model, and the exception the tool raised (if it did)."""
    if t is None:
        msg = f"Error: no tool named {call.name!r}; available: {', '.join(by_name)}"
        return ToolResult(call.id, call.name, msg, True), None
    if "_raw" in call.arguments and len(call.arguments) == 1:
        msg = f"Error: arguments are not valid JSON: {call.arguments['_raw']}"
        return ToolResult(call.id, call.name, msg, True), None
    try:
        value = await t.run(call.arguments)
        if isinstance(value, ToolOutput):
            return ToolResult(call.id, call.name, value.text, value=value.value), None
        return ToolResult(call.id, call.name, _stringify(value), value=value), None
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return ToolResult(call.id, call.name, f"Error: {type(exc).__name__}: {exc}", True), exc
