"""Per-request sampling, in C: one llama.cpp sampler chain per request.

The chain mirrors llama-cpp-python's own (`Llama._init_sampler`): penalties, the grammar, then
greedy (temperature 0) or top-k, typical, top-p, min-p, temperature and a seeded draw. Each
request owns its chain, so concurrent requests never share sampling state, seeds or grammars.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError
from .native import Model, llama

__all__ = ["DEFAULT_REPEAT_PENALTY", "Sampling", "grammar_for_schema"]

#: small models loop on themselves without a repetition penalty (SmolLM2-135M does)
DEFAULT_REPEAT_PENALTY = 1.1
#: tokens the penalties look back over (llama-cpp-python's `last_n_tokens_size`)
PENALTY_LAST_N = 64
#: llama.cpp's "pick a random seed"
RANDOM_SEED = 0xFFFFFFFF


@dataclass(frozen=True)
class Sampling:
    """One request's sampling settings (llama-cpp-python's defaults where unset)."""

    temperature: float = 0.2
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = DEFAULT_REPEAT_PENALTY
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    grammar: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], grammar: str | None) -> Sampling:
        names = (
            "temperature",
            "top_k",
            "top_p",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "seed",
        )
        given = {k: params[k] for k in names if params.get(k) is not None}
        return cls(grammar=grammar, **given)

    def build(self, model: Model) -> Any:
        """A new sampler chain (the caller frees it with `free_chain`)."""
        L = llama()
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = L.llama_sampler_chain_add
        add(
            chain,
            L.llama_sampler_init_penalties(
                model.n_vocab,
                PENALTY_LAST_N,
                float(self.repeat_penalty),
                float(self.frequency_penalty),
                float(self.presence_penalty),
            ),
        )
        if self.grammar is not None:
            g = L.llama_sampler_init_grammar(model.vocab, self.grammar.encode("utf-8"), b"root")
            if not g:
                L.llama_sampler_free(chain)
                raise ConfigurationError("llama.cpp could not compile the grammar of this response schema")
            add(chain, g)
        if self.temperature <= 0:
            add(chain, L.llama_sampler_init_greedy())
        else:
            add(chain, L.llama_sampler_init_top_k(int(self.top_k)))
            add(chain, L.llama_sampler_init_typical(float(self.typical_p), 1))
            add(chain, L.llama_sampler_init_top_p(float(self.top_p), 1))
            add(chain, L.llama_sampler_init_min_p(float(self.min_p), 1))
            add(chain, L.llama_sampler_init_temp(float(self.temperature)))
            seed = RANDOM_SEED if self.seed is None else self.seed & 0xFFFFFFFF
            add(chain, L.llama_sampler_init_dist(seed))
        return chain


def free_chain(chain: Any) -> None:
    if chain:
        llama().llama_sampler_free(chain)


_grammars: dict[str, str] = {}
_grammar_lock = threading.Lock()


def grammar_for_schema(schema: Mapping[str, Any] | None) -> str | None:
    """GBNF for a JSON schema (cached per schema); plain JSON when the converter cannot cope.

    The converter is llama-cpp-python's `json_schema_to_gbnf`, the one its
    `response_format` uses, so a schema constrains output exactly as it did before.
    """
    if schema is None:
        return None
    key = json.dumps(schema, sort_keys=True)
    with _grammar_lock:
        cached = _grammars.get(key)
    if cached is not None:
        return cached
    from llama_cpp import llama_grammar

    try:
        gbnf = str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception:
        gbnf = str(llama_grammar.JSON_GBNF)
    with _grammar_lock:
        _grammars[key] = gbnf
    return gbnf


def stops_of(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The `stop` hyperparameter as a tuple of non-empty strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(s for s in value if s)
