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

if TYPE_CHECKING:
    from .processor import LMRequestProcessor

__all__ = [
    "DEFAULT_MODEL",
    "JSON_OBJECT_SCHEMA",
    "MODEL_OPTIONS",
    "ModelOption",
    "add_options",
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

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")


MODEL_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(("--model", "-m"), f"provider/model id (default {DEFAULT_MODEL})", default=DEFAULT_MODEL),
    ModelOption(("--base-url",), "provider endpoint (for openai-compatible servers)", config="base_url"),
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
)


def add_options(
    parser: argparse.ArgumentParser, extra: Sequence[ModelOption] = (), declared: Sequence[str] = ()
) -> None:
    """Add `MODEL_OPTIONS` (read at call time), then a command's own `extra` options. `declared`
    names shared flags the command declares itself, with its own help and checks (`serve
    --max-tokens` is also the ceiling a client may ask for); their values still go where the
    shared option says. The parsed namespace records the options it holds."""
    options = (*MODEL_OPTIONS, *extra)
    for opt in options:
        if opt.flags[0] not in declared:
            parser.add_argument(*opt.flags, dest=opt.dest, type=opt.type, default=opt.default, help=opt.help)
    parser.set_defaults(model_options=options)


def invoker_config(args: argparse.Namespace, extra: Sequence[ModelOption] = ()) -> dict[str, Any] | None:
    """The `build_lm_invoker` config the given flags ask for (None when they ask for nothing)."""
    config: dict[str, Any] = {}
    hyper: dict[str, Any] = {}
    options = getattr(args, "model_options", None) or (*MODEL_OPTIONS, *extra)
    for opt in options:
        value = getattr(args, opt.dest)
        if value is None or value == "":
            continue
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


def build_processor(args: argparse.Namespace) -> LMRequestProcessor[Any]:
    """The processor `lmstream serve` and `lmstream worker` run (so a queued chat runs as on the node)."""
    from .factory import build_lm_request_processor

    return build_lm_request_processor(
        args.model, config=invoker_config(args), system_template=literal_template(args.system)
    )
