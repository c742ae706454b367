"""A near-zero-cost OpenAI Chat Completions streaming server for client-side benchmarks.

Pure asyncio stdlib, meant to run in its OWN process so the client's CPU is measured alone.

    python benchmarks/sse_server.py --port 8765          # prints "LISTENING <port>" when ready
    python benchmarks/sse_server.py --port 0             # pick a free port

Protocol: HTTP/1.1, keep-alive, `Transfer-Encoding: chunked`, `text/event-stream`. Every SSE
event (`data: {...}\\n\\n`) is sent in its own HTTP chunk with its own `write()` (TCP_NODELAY is
on, as asyncio sets it), the way a network delivers a token stream. The stream is:

    1 role chunk   delta {"role":"assistant","content":"","refusal":null}
    N content chunks, one token each (" w0", " w1", ...: every token starts with one space)
    1 finish chunk  delta {}, finish_reason "stop"
    1 usage chunk   choices [] and a usage object
    data: [DONE]

Chunk JSON mirrors OpenAI's (id, object, created, model, system_fingerprint,
choices[{index, delta, logprobs, finish_reason}], and `"usage": null` when the request set
stream_options.include_usage). Unpaced responses are pre-rendered once per token count and cached.

Token count: `max_tokens` or `max_completion_tokens` in the JSON body, else `?tokens=N`, else
`--tokens` (default 20,000).

Per-request options may also be given as path segments before `/v1`, so any SDK can reach them
through its base_url, e.g. base_url `http://127.0.0.1:8765/delay=0.02/ts=1/first=5/v1`:

    tokens=N     token count (when the body has no max_tokens)
    delay=S      seconds between content chunks (paced mode, for latency tests)
    first=S      seconds to hold after the response headers before the first chunk
                 (the stream is then "idle": used to measure memory per idle stream)
    hold=1       after the headers, hold the stream until `/release` is requested (any method),
                 at most 120 s: all streams then start together (memory-per-idle-stream tests)
    ts=1         token text is " <time.time() at send>" instead of " wK", so a client can
                 compute per-token delivery latency from the text alone (works through any SDK)

Paced streams are driven by one ticker (not one timer per stream) with streams spread over
`--slots` phases of the interval, so 1,000 paced streams cost one process little CPU.

`GET /stats` returns JSON counters: open connections, active streams, idle (held) streams.
`GET /release` releases every stream held with hold=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

MODEL = "gpt-4o-mini-2024-07-18"
FINGERPRINT = "fp_0ba0d124f1"
CREATED = 1732000000
CHAT_ID = "chatcmpl-AXbench0000000000000000000000"


def token_text(i: int) -> str:
    """Token i of an unpaced stream. Every token is one space + a word with no spaces."""
    return f" w{i}"


def expected_text(n: int) -> str:
    return "".join(token_text(i) for i in range(n))


def count_tokens(text: str) -> int:
    """Number of server tokens in a (possibly coalesced) text: one leading space per token."""
    return text.count(" ")


def _frame(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def _sse(obj: dict) -> bytes:
    return _frame(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


def _chunk_obj(delta: dict, finish: str | None, include_usage: bool) -> dict:
    obj = {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if include_usage:
        obj["usage"] = None
    return obj


def _content_prefix_suffix(include_usage: bool) -> tuple[bytes, bytes]:
    """Byte template around the JSON-encoded content string of a content chunk."""
    marker = "\x00MARK\x00"
    s = json.dumps(_chunk_obj({"content": marker}, None, include_usage), separators=(",", ":"))
    pre, post = s.split(json.dumps(marker))
    return b"data: " + pre.encode(), post.encode() + b"\n\n"


def _head_chunks(include_usage: bool) -> bytes:
    return _sse(_chunk_obj({"role": "assistant", "content": "", "refusal": None}, None, include_usage))


def _tail_chunks(n: int, include_usage: bool) -> list[bytes]:
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": n,
        "total_tokens": 9 + n,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    fin = _chunk_obj({}, "stop", include_usage)
    u = {k: v for k, v in _chunk_obj({}, None, False).items() if k != "choices"}
    u["choices"] = []
    u["usage"] = usage
    return [_sse(fin), _sse(u), _frame(b"data: [DONE]\n\n"), b"0\r\n\r\n"]


_RESP_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n"
    b"connection: keep-alive\r\n"
    b"cache-control: no-cache\r\n"
    b"x-request-id: req_bench\r\n"
    b"openai-processing-ms: 1\r\n"
    b"\r\n"
)


class Server:
    def __init__(
        self, default_tokens: int, default_delay: float, slots: int, cache_max: int = 8, hold_max: float = 120.0
    ) -> None:
        self.hold_max = hold_max
        self.default_tokens = default_tokens
        self.default_delay = default_delay
        self.slots = max(1, slots)
        self._cache: dict[tuple[int, bool], list[bytes]] = {}
        self._cache_max = cache_max
        self.conns = 0
        self.active = 0
        self.idle = 0
        self.requests = 0
        self.held = 0
        self.gate: asyncio.Event | None = None  # created in the loop (amain)
        # paced streams: interval -> list of slot lists of _Paced
        self._pacers: dict[float, list[list[_Paced]]] = {}
        self._ticker_tasks: dict[float, asyncio.Task] = {}
        self._slot_rr = 0

    # ------------------------------------------------------------------ unpaced
    def rendered(self, n: int, include_usage: bool) -> list[bytes]:
        key = (n, include_usage)
        chunks = self._cache.get(key)
        if chunks is None:
            pre, post = _content_prefix_suffix(include_usage)
            chunks = [_head_chunks(include_usage)]
            for i in range(n):
                chunks.append(_frame(pre + json.dumps(token_text(i)).encode() + post))
            chunks += _tail_chunks(n, include_usage)
            if len(self._cache) >= self._cache_max:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = chunks
        return chunks

    # ------------------------------------------------------------------ paced
    def _add_paced(self, p: _Paced) -> None:
        slots = self._pacers.get(p.delay)
        if slots is None:
            slots = self._pacers[p.delay] = [[] for _ in range(self.slots)]
            self._ticker_tasks[p.delay] = asyncio.get_running_loop().create_task(self._ticker(p.delay))
        slots[self._slot_rr % self.slots].append(p)
        self._slot_rr += 1

    async def _ticker(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        slots = self._pacers[delay]
        step = delay / self.slots
        nxt = loop.time()
        k = 0
        while True:
            lst = slots[k]
            if lst:
                keep = []
                for p in lst:
                    if p.step():
                        keep.append(p)
                slots[k] = keep
            k = (k + 1) % self.slots
            nxt += step
            now = loop.time()
            if nxt < now - delay:  # fell far behind: do not try to catch up in a burst
                nxt = now
            await asyncio.sleep(max(0.0, nxt - now))
            if k == 0 and not any(slots):
                # no paced streams left: stop; the next paced stream starts a new ticker
                del self._pacers[delay]
                del self._ticker_tasks[delay]
                return

    # ------------------------------------------------------------------ HTTP
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, _ = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            await reader.readuntil(b"\r\n")
                            break
                        parts.append(await reader.readexactly(size))
                        await reader.readexactly(2)
                    body = b"".join(parts)
                keep = headers.get("connection", "").lower() != "close"
                ok = await self.respond(method, target, body, writer)
                if not ok or not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.conns -= 1
            try:
                writer.close()
            except Exception:
                pass

    async def respond(self, method: str, target: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        url = urlsplit(target)
        path = url.path
        if path.rstrip("/").endswith("/release"):
            # open the gate for every stream held with hold=1
            gate, self.gate = self.gate, asyncio.Event()
            released = self.held
            gate.set()
            data = json.dumps({"released": released}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(data), data)
            )
            await writer.drain()
            return True
        if method == "GET" and path.rstrip("/").endswith("/stats"):
            data = json.dumps(
                {
                    "conns": self.conns,
                    "active": self.active,
                    "idle": self.idle,
                    "held": self.held,
                    "requests": self.requests,
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(data), data)
            )
            await writer.drain()
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            msg = b'{"error":{"message":"not found","type":"invalid_request_error"}}'
            writer.write(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                % (len(msg), msg)
            )
            await writer.drain()
            return True
        self.requests += 1
        opts: dict[str, str] = {}
        for seg in path.split("/"):
            if "=" in seg:
                k, v = seg.split("=", 1)
                opts[k] = v
        for k, v in parse_qs(url.query).items():
            opts[k] = v[-1]
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            req = {}
        n = req.get("max_tokens") or req.get("max_completion_tokens") or int(opts.get("tokens", self.default_tokens))
        n = int(n)
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        delay = float(opts.get("delay", self.default_delay))
        first = float(opts.get("first", 0))
        hold = opts.get("hold") == "1"
        ts = opts.get("ts") == "1"

        writer.write(_RESP_HEAD)
        self.active += 1
        try:
            if hold:
                await writer.drain()
                self.held += 1
                self.idle += 1
                try:
                    await asyncio.wait_for(self.gate.wait(), self.hold_max)
                except TimeoutError:
                    pass
                finally:
                    self.held -= 1
                    self.idle -= 1
            if first > 0:
                await writer.drain()
                self.idle += 1
                try:
                    await asyncio.sleep(first)
                finally:
                    self.idle -= 1
            if delay > 0 or ts:
                if delay <= 0:
                    # timestamps without pacing: render on the fly, one write each
                    pre, post = _content_prefix_suffix(include_usage)
                    writer.write(_head_chunks(include_usage))
                    for _ in range(n):
                        writer.write(_frame(pre + json.dumps(f" {time.time():.6f}").encode() + post))
                        await writer.drain()
                    for c in _tail_chunks(n, include_usage):
                        writer.write(c)
                    await writer.drain()
                else:
                    p = _Paced(writer, n, include_usage, delay, ts)
                    writer.write(_head_chunks(include_usage))
                    self._add_paced(p)
                    await p.done
                    await writer.drain()
            else:
                w = writer.write
                drain = writer.drain
                for c in self.rendered(n, include_usage):
                    w(c)
                    await drain()
        finally:
            self.active -= 1
        return not writer.is_closing()


class _Paced:
    __slots__ = ("delay", "done", "i", "include_usage", "n", "post", "pre", "transport", "ts", "writer")

    def __init__(self, writer: asyncio.StreamWriter, n: int, include_usage: bool, delay: float, ts: bool) -> None:
        self.writer = writer
        self.transport = writer.transport
        self.n = n
        self.i = 0
        self.pre, self.post = _content_prefix_suffix(include_usage)
        self.include_usage = include_usage
        self.delay = delay
        self.ts = ts
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def step(self) -> bool:
        """Write the next chunk. Returns False when the stream is finished."""
        t = self.transport
        if t.is_closing():
            if not self.done.done():
                self.done.set_result(None)
            return False
        if self.i < self.n:
            tok = f" {time.time():.6f}" if self.ts else token_text(self.i)
            t.write(_frame(self.pre + json.dumps(tok).encode() + self.post))
            self.i += 1
            return True
        for c in _tail_chunks(self.n, self.include_usage):
            t.write(c)
        if not self.done.done():
            self.done.set_result(None)
        return False


async def amain(args: argparse.Namespace) -> None:
    srv = Server(args.tokens, args.delay, args.slots)
    srv.gate = asyncio.Event()
    server = await asyncio.start_server(
        srv.handle, args.host, args.port, backlog=args.backlog, reuse_port=args.reuse_port or None
    )
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        if args.max_seconds > 0:
            try:
                await asyncio.wait_for(server.serve_forever(), args.max_seconds)
            except TimeoutError:
                pass
        else:
            await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    ap.add_argument("--tokens", type=int, default=20000, help="default token count")
    ap.add_argument(
        "--delay",
        "--tokens-per-chunk-delay",
        dest="delay",
        type=float,
        default=0.0,
        help="default seconds between content chunks (0 = as fast as possible)",
    )
    ap.add_argument("--slots", type=int, default=10, help="phases per pacing interval for paced streams")
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT (run several server processes)")
    ap.add_argument("--max-seconds", type=float, default=0, help="exit after this long (0 = run until killed)")
    args = ap.parse_args(argv)
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except Exception:
        pass
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
