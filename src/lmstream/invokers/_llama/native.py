"""The model and its context through llama-cpp-python's low-level (ctypes) API.

Only this module touches `llama_cpp` pointers for loading, tokens and the KV memory; the
sampling module builds sampler chains and the engine loop drives `llama_decode`. Loading one
model once per file and sharing it between contexts keeps the weights in memory once.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

from ...errors import ConfigurationError

__all__ = ["Context", "Model", "load_model", "llama"]

_lock = threading.Lock()
_models: dict[str, Model] = {}
_backend_ready = False


def llama() -> Any:
    """The `llama_cpp` module, imported on first use (it is heavy and optional)."""
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the local runtime llama-cpp-python is not installed; run: pip install 'lmstream[local]'"
        ) from exc
    return llama_cpp


class Model:
    """A loaded GGUF: weights, vocabulary, the chat template and a token -> bytes cache."""

    def __init__(self, path: str) -> None:
        global _backend_ready
        L = llama()
        log = logging.getLogger("llama-cpp-python")
        if log.level == logging.NOTSET:  # llama.cpp's load chatter stays out of the user's terminal
            log.setLevel(logging.ERROR)
        if not _backend_ready:
            L.llama_backend_init()
            _backend_ready = True
        self.path = path
        self.ptr = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
        if not self.ptr:
            raise ConfigurationError(f"could not load GGUF model {path}: llama.cpp refused the file")
        self.vocab = L.llama_model_get_vocab(self.ptr)
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self.ptr))
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self._pieces: dict[int, bytes] = {}
        self._buf = ctypes.create_string_buffer(256)
        raw = L.llama_model_chat_template(self.ptr, None)
        self.chat_template: str | None = raw.decode("utf-8") if raw else None
        self.eos_text = self._piece(L.llama_vocab_eos(self.vocab), special=True).decode("utf-8", "ignore")
        self.bos_text = self._piece(L.llama_vocab_bos(self.vocab), special=True).decode("utf-8", "ignore")

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """Text -> token ids, special tokens (`<|im_start|>`) parsed as such."""
        L = llama()
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:  # cannot happen with one slot per byte, but llama.cpp says how many it needs
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        return list(buf[:n])

    def _piece(self, token: int, special: bool = False) -> bytes:
        L = llama()
        n = L.llama_token_to_piece(self.vocab, token, self._buf, len(self._buf), 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, big, len(big), 0, special)
            return big.raw[:n]
        return self._buf.raw[:n]

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for (special tokens render as nothing)."""
        p = self._pieces.get(token)
        if p is None:
            p = self._pieces[token] = self._piece(token)
        return p

    def is_eog(self, token: int) -> bool:
        return bool(llama().llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.ptr:
            llama().llama_model_free(self.ptr)
            self.ptr = None


def load_model(path: str) -> Model:
    """The model of `path`, loaded once per process and shared by every context."""
    with _lock:
        model = _models.get(path)
        if model is None:
            model = _models[path] = Model(path)
        return model


def free_models() -> None:
    """Free every model (at exit, after every context that used them is gone)."""
    with _lock:
        for model in _models.values():
            model.close()
        _models.clear()


class Context:
    """One llama.cpp context holding `n_seq` sequences of `n_ctx_seq` cells each.

    Each sequence has a KV stream of its own (`kv_unified` off), so attention never looks at
    another request's cells and a sequence cannot run out of room because of its neighbours.
    """

    def __init__(
        self, model: Model, n_seq: int, n_ctx_seq: int, n_batch: int, n_threads: int, n_threads_batch: int
    ) -> None:
        L = llama()
        p = L.llama_context_default_params()
        p.n_ctx = n_ctx_seq * n_seq
        p.n_batch = p.n_ubatch = n_batch
        p.n_seq_max = n_seq
        p.n_threads = n_threads
        p.n_threads_batch = n_threads_batch
        p.kv_unified = False
        p.no_perf = True
        self.model = model
        self.ptr = L.llama_init_from_model(model.ptr, p)
        if not self.ptr:
            raise ConfigurationError(
                f"llama.cpp could not create a context of {n_seq} x {n_ctx_seq} tokens for {model.path}; "
                "lower parallel or n_ctx"
            )
        self.mem = L.llama_get_memory(self.ptr)
        self.n_seq = n_seq
        self.n_ctx_seq = min(n_ctx_seq, int(L.llama_n_ctx_seq(self.ptr)))
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(n_batch, 0, n_seq)

    def clear(self, seq: int) -> None:
        """Drop every cell of `seq`."""
        llama().llama_memory_seq_rm(self.mem, seq, -1, -1)

    def truncate(self, seq: int, keep: int) -> None:
        """Keep positions [0, keep) of `seq`, drop the rest."""
        if not llama().llama_memory_seq_rm(self.mem, seq, keep, -1):
            llama().llama_memory_seq_rm(self.mem, seq, -1, -1)
            raise RuntimeError("llama.cpp could not trim a sequence")

    def copy(self, src: int, dst: int) -> None:
        """Make `dst` hold what `src` holds (the whole stream is copied at the next decode)."""
        llama().llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def cells_in_use(self) -> int:
        """KV cells holding a position, over every sequence (0 when all are empty)."""
        L = llama()
        total = 0
        for seq in range(self.n_seq):
            hi = int(L.llama_memory_seq_pos_max(self.mem, seq))
            if hi >= 0:
                total += hi - int(L.llama_memory_seq_pos_min(self.mem, seq)) + 1
        return total

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> int:
        """One `llama_decode` of `(token, pos, seq, wants_logits)` entries; llama.cpp's status."""
        b = self.batch
        token, pos, n_seq_id, seq_id, logits = b.token, b.pos, b.n_seq_id, b.seq_id, b.logits
        for i, (tok, p, seq, want) in enumerate(entries):
            token[i] = tok
            pos[i] = p
            n_seq_id[i] = 1
            seq_id[i][0] = seq
            logits[i] = want
        b.n_tokens = len(entries)
        return int(llama().llama_decode(self.ptr, b))

    def close(self) -> None:
        L = llama()
        if self.ptr:
            L.llama_batch_free(self.batch)
            L.llama_free(self.ptr)
            self.ptr = None
