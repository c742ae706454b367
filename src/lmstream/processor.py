"""The LM Request Processor: prompt builder -> LM invoker -> optional output parser."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from .approval import DeferredApproval, resume_tool_step, run_tool_step
from .budget import Budget, as_budget
from .cache import ResponseCache, deterministic, request_context, request_key
from .engine.call import call_model, prepare
from .engine.lifecycle import RequestContext, run_request
from .engine.request_stream import RequestStream
from .errors import ConfigurationError, OutputParserError, PromptError, ToolError
from .events import EventEmitter
from .invokers.base import BaseLMInvoker
from .parsers import BaseOutputParser
from .prompt import Content, Message, PromptBuilder
from .sync import SyncRequestStream, run_sync
from .types import LMOutput, TokenUsage

if TYPE_CHECKING:
    from .batch import BatchResult
    from .tools import Tool

__all__ = ["LMRequestProcessor"]


def _cacheable(output: LMOutput) -> bool:
    """Only a clean finish is kept: the model stopped by itself (or asked for tools the caller
    runs). Never a cut (`length`), a filtered, an interrupted or an approval-waiting answer."""
    return output.finish_reason in ("stop", "tool_calls")


OutT = TypeVar("OutT")

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class _Request:
    """One request's arguments (`_request_arguments` makes it)."""

    prompt_kwargs: Mapping[str, Any] | None
    history: Sequence[Message | Mapping[str, Any]] | None
    extra_contents: Sequence[Content] | None
    hyperparameters: Mapping[str, Any] | None
    event_emitter: EventEmitter | None
    auto_execute_tools: bool
    max_lm_calls: int
    approval_timeout: float | None
    deferred_approval: DeferredApproval | None
    cache: bool  # False: this request bypasses the processor's response cache
    cache_scope: str | None  # the tenant, overriding the processor's `cache_scope`
    keywords: dict[str, Any]  # the `**kwargs` that fill the templates


def _request_arguments(
    _processor: Any,
    /,
    prompt_kwargs: Mapping[str, Any] | None = None,
    *,
    history: Sequence[Message | Mapping[str, Any]] | None = None,
    extra_contents: Sequence[Content] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    event_emitter: EventEmitter | None = None,
    auto_execute_tools: bool = True,
    max_lm_calls: int = 5,
    approval_timeout: float | None = None,
    deferred_approval: DeferredApproval | None = None,
    cache: bool = True,
    cache_scope: str | None = None,
    **kwargs: Any,
) -> _Request:
    """The arguments of one request, spelled once: `process()`, `stream()`, `process_sync()` and
    `stream_sync()` all take exactly these (`_face`). `**kwargs` fill the templates."""
    return _Request(
        prompt_kwargs,
        history,
        extra_contents,
        hyperparameters,
        event_emitter,
        auto_execute_tools,
        max_lm_calls,
        approval_timeout,
        deferred_approval,
        cache,
        cache_scope,
        kwargs,
    )


#: the request's own parameters: a template key with one of these names must go in prompt_kwargs=
_OWN_ARGS = frozenset(inspect.signature(_request_arguments).parameters) - {"_processor", "kwargs"}


def _face_of(
    args: Callable[Concatenate[Any, P], _Request],
) -> Callable[[Callable[[S, _Request], R]], Callable[Concatenate[S, P], R]]:
    """A public face of a request (`process`, `stream`, ...): `run(self, request)` with the
    signature of `args`, so the arguments are spelled once and every face takes them all."""

    def face(run: Callable[[S, _Request], R]) -> Callable[Concatenate[S, P], R]:
        def method(self: S, /, *a: P.args, **kw: P.kwargs) -> R:
            return run(self, args(self, *a, **kw))

        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(method, name, getattr(run, name))
        # what help() and the docs show: the arguments' signature, with this face's return
        sig, own = inspect.signature(args), inspect.signature(run)
        params = [own.parameters["self"], *list(sig.parameters.values())[1:]]
        setattr(method, "__signature__", sig.replace(parameters=params, return_annotation=own.return_annotation))  # noqa: B010
        return method

    return face


_request_face = _face_of(_request_arguments)


class LMRequestProcessor(Generic[OutT]):
    """Formats the prompt, streams the model (running tools it asks for) and parses the output.

    Typed by its parser: `process()` and `stream().result()` give the parser's value, or the
    `LMOutput` when there is no parser.
    """

    @overload
    def __init__(
        self: LMRequestProcessor[LMOutput],
        prompt_builder: PromptBuilder,
        lm_invoker: BaseLMInvoker,
        output_parser: None = None,
        tools: Sequence[Any] | None = None,
        response_schema: Any = None,
        budget: float | Budget | None = None,
        cache: ResponseCache | None = None,
        cache_scope: str | None = None,
        cache_sampled: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self: LMRequestProcessor[OutT],
        prompt_builder: PromptBuilder,
        lm_invoker: BaseLMInvoker,
        output_parser: BaseOutputParser[OutT],
        tools: Sequence[Any] | None = None,
        response_schema: Any = None,
        budget: float | Budget | None = None,
        cache: ResponseCache | None = None,
        cache_scope: str | None = None,
        cache_sampled: bool = False,
    ) -> None: ...

    def __init__(
        self,
        prompt_builder: PromptBuilder,
        lm_invoker: BaseLMInvoker,
        output_parser: BaseOutputParser[Any] | None = None,
        tools: Sequence[Any] | None = None,
        response_schema: Any = None,
        budget: float | Budget | None = None,
        cache: ResponseCache | None = None,
        cache_scope: str | None = None,
        cache_sampled: bool = False,
    ) -> None:
        """`budget=` (USD, or a shared `Budget`): no new model call once it is spent
        (`BudgetExceededError`); streamed requests count too. `cache=` (a `ResponseCache`):
        repeated and simultaneous identical requests share one generation; `cache_scope` keeps
        one tenant's answers from another's; `cache_sampled=True` also caches requests that
        sample (by default only temperature 0 or a fixed seed)."""
        if not isinstance(prompt_builder, PromptBuilder):
            raise ConfigurationError("prompt_builder must be a PromptBuilder")
        if not isinstance(lm_invoker, BaseLMInvoker):
            raise ConfigurationError("lm_invoker must be an invoker, e.g. build_lm_invoker('local/smollm2-135m')")
        self.prompt_builder = prompt_builder
        self.lm_invoker = lm_invoker
        self.output_parser = output_parser
        self.budget = as_budget(budget)
        self.cache = cache
        self.cache_scope = cache_scope
        self.cache_sampled = cache_sampled
        self._tools: list[Tool[..., Any]] | None = None  # None: the invoker's own (`tools=` when built)
        self._schema: tuple[dict[str, Any] | None, Any] | None = None  # (JSON schema, pydantic model)
        if tools:
            self.set_tools(tools)
        if response_schema is not None:
            self.set_response_schema(response_schema)

    @property
    def tools(self) -> list[Tool[..., Any]]:
        """The tools this processor's requests offer the model (by default the invoker's own)."""
        return self.lm_invoker.tools if self._tools is None else self._tools

    def set_tools(self, tools: Sequence[Any]) -> None:
        """The tools this processor's requests offer: kept here, sent with each model call, so
        processors sharing one invoker each offer their own."""
        from .tools import to_tool

        self.lm_invoker.check_tools(tools)
        self._tools = [to_tool(t) for t in tools]

    def clear_tools(self) -> None:
        self._tools = []

    @property
    def response_schema(self) -> dict[str, Any] | None:
        """The JSON schema answers must match (by default the invoker's own), or None."""
        return self._schema_parts()[0]

    def set_response_schema(self, schema: Any) -> None:
        """A pydantic model or a JSON schema the answer must match (None: none), for this
        processor's requests only."""
        from .structured import schema_of

        self._schema = schema_of(schema) if schema is not None else (None, None)

    def _schema_parts(self) -> tuple[dict[str, Any] | None, Any]:
        if self._schema is None:
            return self.lm_invoker.response_schema, self.lm_invoker._schema_model
        return self._schema

    @_request_face
    def process(self, req: _Request) -> Coroutine[Any, Any, OutT]:
        """Run one request; returns the parsed output if a parser is set, else the `LMOutput`.

        `**kwargs` fill the templates. Events end with one `done` (usage summed over every model
        call) or one `error`. The request counts as watched by the emitter from this call on, so `stream()`
        ends even if the task running it is cancelled before it starts. A closed emitter is
        refused here. A tool that `requires_approval` waits for `lmstream.approval.answer()` (or
        the stream's `approve()`/`deny()`), denied after `approval_timeout` seconds when given;
        `deferred_approval` instead ends the request there and continues it later (a server).
        With a response cache, `cache=False` bypasses it for this request and `cache_scope=`
        sets its tenant.
        """
        return self._process(req)

    @_request_face
    def stream(self, req: _Request) -> RequestStream[OutT]:
        """The request as its own event stream: `async with lmrp.stream(...) as stream`.

        Same arguments as `process()`; `event_emitter=` also feeds that emitter's handlers.
        Answer a `tool_approval_request` with `stream.approve(id)` / `stream.deny(id, reason)`.
        """
        return self._stream(req)

    @_request_face
    def process_sync(self, req: _Request) -> OutT:
        """`process()` for synchronous code (scripts, notebooks, a sync web route): blocks until
        the output is ready. Runs on lmstream's background loop, so it works inside a running one."""
        return run_sync(lambda: self._process(req))

    @_request_face
    def stream_sync(self, req: _Request) -> SyncRequestStream[OutT]:
        """`stream()` for synchronous code: `with lmrp.stream_sync(...) as s: for event in s`;
        each event arrives as the model produces it."""
        return SyncRequestStream(lambda: self._stream(req))

    def _process(self, req: _Request) -> Coroutine[Any, Any, OutT]:
        ctx = RequestContext(req.event_emitter)
        coro = self._request(ctx, "process", req)
        ctx.register(coro)
        return coro

    def _stream(self, req: _Request) -> RequestStream[OutT]:
        return RequestStream(lambda ctx: self._request(ctx, "stream", req), req.event_emitter)

    async def batch(
        self,
        requests: Iterable[Any],
        *,
        concurrency: int | None = None,
        on_result: Callable[[BatchResult], Awaitable[None] | None] | None = None,
        budget: float | Budget | None = None,
    ) -> list[BatchResult]:
        """Run many requests (prompts, or dicts like `lmstream batch` input lines), a bounded number
        at a time; each result reaches `on_result` as it finishes. See `lmstream.batch`."""
        from .batch import batch

        return await batch(self, requests, concurrency=concurrency, on_result=on_result, budget=budget)

    def _request(self, ctx: RequestContext, kind: str, req: _Request) -> Coroutine[Any, Any, OutT]:
        """`_run(ctx, req)` inside the shared request lifecycle (one `done` or `error` event);
        `kind` names the request's parent span (observability seam)."""
        return run_request(ctx, partial(self._run, ctx, req), kind=kind)

    async def _run(self, ctx: RequestContext, req: _Request) -> tuple[OutT, LMOutput]:
        if req.prompt_kwargs is not None and not isinstance(req.prompt_kwargs, Mapping):
            raise self.prompt_builder.positional_value_error(req.prompt_kwargs)
        values = dict(req.prompt_kwargs or {})
        both = sorted(set(values) & set(req.keywords))
        if both:
            raise ConfigurationError(f"prompt keys given twice (in prompt_kwargs and as keywords): {', '.join(both)}")
        values.update(req.keywords)
        max_lm_calls, hyperparameters = req.max_lm_calls, req.hyperparameters
        if not isinstance(max_lm_calls, int) or max_lm_calls < 1:
            raise ConfigurationError("max_lm_calls must be an int >= 1")
        invoker = self.lm_invoker
        deferred = req.deferred_approval
        if deferred is not None and deferred.resume is not None:  # finish the saved step first
            messages = await resume_tool_step(ctx, self.tools, deferred)
        else:
            messages = self._messages(values, req.history, req.extra_contents)
        cache = self._cache_for(req, messages)
        if cache is None:
            output = await self._generate(ctx, req, messages)
        else:
            response_cache, key = cache
            output = await response_cache.serve(
                ctx, key, partial(self._generate, req=req, messages=messages), _cacheable
            )
            schema, model = self._schema_parts()
            if schema is not None and output.structured_output is None and not output.tool_calls:
                from .structured import validate_structured  # a stored entry keeps the text, not the object

                output.structured_output = validate_structured(output.text, schema, model)
        if ctx.first_token_at is not None:
            output.time_to_first_token = ctx.first_token_at - ctx.started
        if self.output_parser is not None:
            try:
                return self.output_parser.parse(output.text), output
            except OutputParserError:
                if output.finish_reason != "length":
                    raise
                from .structured import truncated_output

                limit = {**invoker.default_hyperparameters, **(hyperparameters or {})}.get("max_tokens")
                raise truncated_output(output.text, limit or invoker.output_limit()) from None
        return output, output  # type: ignore[return-value]  # OutT is LMOutput without a parser

    async def _generate(self, ctx: RequestContext, req: _Request, messages: list[Message]) -> LMOutput:
        """The model calls of one request (the tool loop), their usage summed."""
        deferred = req.deferred_approval
        max_lm_calls, hyperparameters = req.max_lm_calls, req.hyperparameters
        total: TokenUsage | None = None  # the first call's usage, then the sum
        output: LMOutput | None = None
        files: list[dict[str, Any]] = []  # files the model made, every call's, in order
        for call in range(1, max_lm_calls + 1):
            output = await self._invoke(messages, hyperparameters, ctx)
            files += output.files
            if total is None:
                total = replace(output.usage)
            else:
                total.add(output.usage)
            if not output.tool_calls or not req.auto_execute_tools or not self.tools:
                break
            if call == max_lm_calls:
                raise ToolError(
                    f"the model still asked for tools after max_lm_calls={max_lm_calls} calls; "
                    "raise max_lm_calls or check the tools' results"
                )
            said: list[Content] = [*output.thinking_blocks, *([output.text] if output.text else []), *output.tool_calls]
            turn = Message("assistant", said)
            step = (ctx, self.tools, output.tool_calls, req.approval_timeout, deferred, [*messages, turn])
            results = await run_tool_step(*step)
            if results is None:  # deferred: the step waits for a person, outside this request
                output.finish_reason = "tool_approval"
                break
            messages = [*messages, turn, Message.tool(results)]
            if hyperparameters and "tool_choice" in hyperparameters:
                # a forced choice is for the first call only (the OpenAI Agents SDK's
                # reset_tool_choice): kept, it would force a call forever, until max_lm_calls
                hyperparameters = {k: v for k, v in hyperparameters.items() if k != "tool_choice"}
        assert output is not None and total is not None
        output.usage = total
        output.files = files
        return output

    def _cache_for(self, req: _Request, messages: list[Message]) -> tuple[ResponseCache, str] | None:
        """The cache and this request's key, or None when the request must run on its own: no
        cache, `cache=False` or a server's `Cache-Control: no-cache`; tools this process runs (a
        call may act on the world, or wait for a person); a resumed approval; a sampled request
        unless `cache_sampled`. The scope is the request's `cache_scope`, else the processor's
        with the tenant a server set (`lmstream.cache.set_request_context`)."""
        cache = self.cache
        deferred = req.deferred_approval
        if cache is None or not req.cache or (deferred is not None and deferred.resume is not None):
            return None
        tenant, bypass = request_context()
        if bypass:
            return None
        invoker = self.lm_invoker
        if self.tools and req.auto_execute_tools:
            return None
        params = {**invoker.default_hyperparameters, **invoker.validate_hyperparameters(req.hyperparameters or {})}
        if not self.cache_sampled and not deterministic(params):
            return None
        scope = req.cache_scope if req.cache_scope is not None else [self.cache_scope, tenant]
        tools = self.tools
        return cache, request_key(
            scope, invoker, messages, params, tools, client_tools=bool(tools), schema=self.response_schema
        )

    async def _invoke(
        self, messages: list[Message], hyperparameters: Mapping[str, Any] | None, ctx: RequestContext
    ) -> LMOutput:
        """One model call with this processor's tools and schema, run by the engine, which
        checks and charges the budget per model call (a fallback chain's failed attempts count
        too), whether the call finishes or breaks."""
        ctx.budget = self.budget
        ctx.step += 1
        msgs, params = prepare(self.lm_invoker, messages, hyperparameters, self.tools, self._schema_parts())
        return await call_model(ctx, self.lm_invoker, msgs, params)

    def _messages(
        self,
        values: dict[str, Any],
        history: Sequence[Message | Mapping[str, Any]] | None,
        extra_contents: Sequence[Content] | None,
    ) -> list[Message]:
        try:
            return self.prompt_builder.format_values(values, history, extra_contents)
        except PromptError as exc:
            shadowed = sorted(set(exc.missing) & _OWN_ARGS)
            if not shadowed:
                raise
            names = ", ".join(shadowed)
            example = ", ".join(f"{k!r}: ..." for k in shadowed)
            raise PromptError(
                f"{exc} -- {names} is also a process()/stream() argument, so a keyword of that name "
                f"does not fill the template; pass it as prompt_kwargs={{{example}}}",
                missing=exc.missing,
                unknown=exc.unknown,
            ) from None
