"""The model options the three commands share: `lmstream`, `lmstream serve`, `lmstream worker`.

Each option says where its value goes, so a new model flag for all three commands is one
`ModelOption(...)` line in `MODEL_OPTIONS`: `config=` names a `build_lm_invoker` config key
(`base_url`, `n_ctx`, ...), `hyper=` a default hyperparameter (`max_tokens`, ...). An option
left unset on the command line is not passed at all, so a provider never sees a key it lacks.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .invokers.base import BaseLMInvoker
    from .processor import LMRequestProcessor

__all__ = [
    "DEFAULT_MODEL",
    "JSON_OBJECT_SCHEMA",
    "MODEL_OPTIONS",
    "ModelOption",
    "add_options",
    "build_invoker",
    "build_processor",
    "invoker_config",
    "literal_template",
]

DEFAULT_MODEL = "local/smollm2-135m"

#: `--json` on the local model: a JSON object, enforced token by token by a grammar (the
#: structured-output path), so even the 135M model cannot wander off into prose
JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "minProperties": 1}


@dataclass(frozen=True)
class ModelOption:
    """One command-line flag and where its value goes (`config` key or hyperparameter)."""

    flags: tuple[str, ...]
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    config: str | None = None
    hyper: str | None = None
    #: "append": the flag may repeat, its values kept in order (a pool's base URLs, fallbacks)
    action: str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")


MODEL_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(("--model", "-m"), f"provider/model id (default {DEFAULT_MODEL})", default=DEFAULT_MODEL),
    ModelOption(
        ("--base-url",),
        "provider endpoint (for openai-compatible servers); repeat it for a pool of equivalent "
        "deployments of the model (requests spread over them; a failing one cools down)",
        config="base_url",
        action="append",
        metavar="URL",
    ),
    ModelOption(("--system", "-s"), "system prompt", default=""),
    ModelOption(("--max-tokens",), "maximum tokens to generate per answer", type=int, hyper="max_tokens"),
    # the embedded model's engine (local/...): sequences at once, threads, window per sequence
    ModelOption(
        ("--parallel",),
        "local model: answers generated at once (default 8); more wait in a FIFO queue",
        type=int,
        config="parallel",
    ),
    ModelOption(
        ("--threads",),
        "local model: llama.cpp threads (default: half the physical cores)",
        type=int,
        config="n_threads",
    ),
    ModelOption(("--n-ctx",), "local model: context window per sequence (default 2048)", type=int, config="n_ctx"),
    # a fallback chain (FallbackLMInvoker): read by build_invoker, not passed to build_lm_invoker
    ModelOption(
        ("--fallback",),
        "a model to try when the one before it fails (repeatable: tried in order)",
        action="append",
        metavar="MODEL",
    ),
    ModelOption(
        ("--fallback-base-url",),
        "the endpoint of the --fallback in the same position (repeatable, in order)",
        action="append",
        metavar="URL",
    ),
    ModelOption(
        ("--first-token-timeout",),
        "seconds to wait for a model's first token before the next --fallback takes over",
        type=float,
        metavar="S",
    ),
    ModelOption(
        ("--on-midstream-failure",),
        "when a model fails after text was streamed: error (default), restart on the next "
        "--fallback, or continue the text there (where it can; else restart)",
        choices=("error", "restart", "continue"),
    ),
)

#: the options that shape the chain, not one invoker's config
_CHAIN = frozenset({"fallback", "fallback_base_url", "first_token_timeout", "on_midstream_failure"})


def add_options(
    parser: argparse.ArgumentParser, extra: Sequence[ModelOption] = (), declared: Sequence[str] = ()
) -> None:
    """Add `MODEL_OPTIONS` (read at call time), then a command's own `extra` options. `declared`
    names shared flags the command declares itself, with its own help and checks (`serve
    --max-tokens` is also the ceiling a client may ask for); their values still go where the
    shared option says. The parsed namespace records the options it holds."""
    options = (*MODEL_OPTIONS, *extra)
    for opt in options:
        if opt.flags[0] in declared:
            continue
        if opt.action == "append":
            parser.add_argument(
                *opt.flags, dest=opt.dest, action="append", default=None, help=opt.help, metavar=opt.metavar
            )
        else:
            parser.add_argument(
                *opt.flags,
                dest=opt.dest,
                type=opt.type,
                default=opt.default,
                help=opt.help,
                choices=opt.choices,
                metavar=opt.metavar,
            )
    parser.set_defaults(model_options=options)


def invoker_config(args: argparse.Namespace, extra: Sequence[ModelOption] = ()) -> dict[str, Any] | None:
    """The `build_lm_invoker` config the given flags ask for (None when they ask for nothing)."""
    config: dict[str, Any] = {}
    hyper: dict[str, Any] = {}
    options = getattr(args, "model_options", None) or (*MODEL_OPTIONS, *extra)
    for opt in options:
        value = getattr(args, opt.dest, None)
        if value is None or value == "" or opt.dest in _CHAIN:
            continue
        if isinstance(value, list):  # a repeated flag: its first value (build_invoker pools the rest)
            value = value[0]
        if opt.config is not None:
            config[opt.config] = value
        if opt.hyper is not None:
            hyper[opt.hyper] = value
    if hyper:
        config["default_hyperparameters"] = hyper
    return config or None


def literal_template(text: str) -> str:
    """A user's text as a template that formats to itself: braces in it are never placeholders."""
    return text.replace("{", "{{").replace("}", "}}")


def build_invoker(args: argparse.Namespace, extra: Sequence[ModelOption] = ()) -> BaseLMInvoker:
    """The invoker the flags ask for: `--model` (a `PooledLMInvoker` over its deployments when
    `--base-url` repeats), then each `--fallback` (with the `--fallback-base-url` in the same
    position) as a `FallbackLMInvoker`. The default hyperparameters (`--max-tokens`, ...) apply
    to every model; the local engine's options to the local ones."""
    from .invokers import build_lm_invoker
    from .invokers.fallback import FallbackLMInvoker, PooledLMInvoker

    config = invoker_config(args, extra) or {}
    urls: list[str] = list(getattr(args, "base_url", None) or [])
    if len(urls) > 1:
        first: BaseLMInvoker = PooledLMInvoker(
            [build_lm_invoker(args.model, config={**config, "base_url": u}) for u in urls]
        )
    else:
        first = build_lm_invoker(args.model, config=config or None)
    fallbacks: list[str] = list(getattr(args, "fallback", None) or [])
    fallback_urls: list[str] = list(getattr(args, "fallback_base_url", None) or [])
    policy = getattr(args, "on_midstream_failure", None)
    timeout = getattr(args, "first_token_timeout", None)
    if not fallbacks:
        if fallback_urls or policy not in (None, "error") or timeout is not None:
            if fallback_urls:
                raise ConfigurationError("--fallback-base-url pairs with a --fallback MODEL; give the model too")
            return FallbackLMInvoker([first], on_midstream_failure=policy or "error", first_token_timeout=timeout)
        return first
    if len(fallback_urls) > len(fallbacks):
        raise ConfigurationError(
            f"{len(fallback_urls)} --fallback-base-url for {len(fallbacks)} --fallback: each URL pairs with the "
            "--fallback in the same position"
        )
    local = {k: v for k, v in config.items() if k in ("parallel", "n_threads", "n_ctx")}
    members = [first]
    for i, model in enumerate(fallbacks):  # --api-key is the first model's; a fallback reads its own variable
        fb_config: dict[str, Any] = {k: v for k, v in config.items() if k == "default_hyperparameters"}
        if model.startswith("local/"):
            fb_config.update(local)
        if i < len(fallback_urls) and fallback_urls[i]:
            fb_config["base_url"] = fallback_urls[i]
        members.append(build_lm_invoker(model, config=fb_config or None))
    return FallbackLMInvoker(members, on_midstream_failure=policy or "error", first_token_timeout=timeout)


def build_processor(args: argparse.Namespace) -> LMRequestProcessor[Any]:
    """The processor `lmstream serve` and `lmstream worker` run (so a queued chat runs as on the node)."""
    from .processor import LMRequestProcessor
    from .prompt import PromptBuilder

    return LMRequestProcessor(PromptBuilder(literal_template(args.system)), build_invoker(args))
