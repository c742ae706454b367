"""Per-request sampling, in C: one llama.cpp sampler chain per request.

The chain mirrors llama-cpp-python's own (`Llama._init_sampler`): penalties, then greedy
(temperature 0) or top-k, typical, top-p, min-p, temperature and a seeded draw. Each request
owns its samplers, so concurrent requests never share sampling state, seeds or grammars.

A grammar (a response schema) is checked the way llama.cpp's own server does it: draw from the
chain first, and only when the grammar rejects that token apply the grammar to the whole
vocabulary and draw again. Applying it to all 49k candidates every token cost 10.5 ms of CPU a
token here, the check 3.5 ms (0.35 ms without a grammar); every token drawn is one the grammar
allows either way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError
from .native import Model, llama

__all__ = ["DEFAULT_REPEAT_PENALTY", "Sampler", "Sampling", "grammar_for_schema"]

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

    def build(self, model: Model) -> Sampler:
        """This request's samplers (freed with `Sampler.free`)."""
        L = llama()
        grammar = None
        if self.grammar is not None:
            grammar = L.llama_sampler_init_grammar(model.vocab, self.grammar.encode("utf-8"), b"root")
            if not grammar:
                raise ConfigurationError("llama.cpp could not compile the grammar of this response schema")
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
        return Sampler(chain, grammar, model.n_vocab)


class Sampler:
    """One request's sampler chain, and its grammar when it has one."""

    __slots__ = ("_cur", "_ids", "_one", "_one_buf", "_tokens", "chain", "grammar", "n_vocab")

    def __init__(self, chain: Any, grammar: Any, n_vocab: int) -> None:
        self.chain = chain
        self.grammar = grammar
        self.n_vocab = n_vocab
        if grammar is not None:
            import numpy as np

            L = llama()
            dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
            self._tokens = np.zeros(n_vocab, dtype=dtype)
            self._ids = np.arange(n_vocab, dtype=np.int32)
            self._cur = L.llama_token_data_array(self._tokens.ctypes.data_as(L.llama_token_data_p), n_vocab, -1, False)
            self._one_buf = (L.llama_token_data * 1)()
            self._one = L.llama_token_data_array(self._one_buf, 1, -1, False)

    def sample(self, ctx: Any, row: int) -> int:
        """The next token from the logits of batch row `row` (accepted into the samplers)."""
        L = llama()
        if self.grammar is None:
            return int(L.llama_sampler_sample(self.chain, ctx, row))
        import ctypes

        import numpy as np

        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, row), shape=(self.n_vocab,))
        token = self._draw(logits, with_grammar=False)
        one = self._one_buf[0]
        one.id, one.logit, one.p = token, 1.0, 0.0
        self._one.size, self._one.selected, self._one.sorted = 1, -1, False
        L.llama_sampler_apply(self.grammar, ctypes.byref(self._one))
        if not np.isfinite(one.logit):  # the grammar forbids it: draw again among what it allows
            token = self._draw(logits, with_grammar=True)
        L.llama_sampler_accept(self.grammar, token)
        L.llama_sampler_accept(self.chain, token)
        return token

    def _draw(self, logits: Any, with_grammar: bool) -> int:
        import ctypes

        L = llama()
        t = self._tokens
        t["id"] = self._ids
        t["logit"] = logits
        t["p"] = 0.0
        cur = self._cur
        cur.size, cur.selected, cur.sorted = self.n_vocab, -1, False
        if with_grammar:
            L.llama_sampler_apply(self.grammar, ctypes.byref(cur))
        L.llama_sampler_apply(self.chain, ctypes.byref(cur))
        return int(t["id"][cur.selected])

    def free(self) -> None:
        L = llama()
        for s in (self.chain, self.grammar):
            if s:
                L.llama_sampler_free(s)
        self.chain = self.grammar = None


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
    else:
        if schema.get("type") == "object" and schema.get("minProperties", 0) >= 1 and not schema.get("properties"):
            gbnf = _members_required(gbnf)
    with _grammar_lock:
        _grammars[key] = gbnf
    return gbnf


def _members_required(gbnf: str) -> str:
    """A free-form object with at least one member, its keys short names: the converter ignores
    `minProperties`, and a small model forced into "any object" answers `{}` (seen with SmolLM2)
    or, made to add a member, writes its prose into the key. Values stay any JSON."""
    lines = gbnf.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("object ::=") and line.count(')? "}"') == 1:
            line = line.replace(')? "}"', ') "}"')
            lines[i] = line.replace('string ":"', 'member-key ":"')
    lines.append('member-key ::= "\\"" [A-Za-z_] [A-Za-z0-9_]{0,31} "\\"" space')
    return "\n".join(lines)


def stops_of(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The `stop` hyperparameter as a tuple of non-empty strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(s for s in value if s)
