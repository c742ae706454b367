"""Stateful replays of the providers' batch APIs, as documented, for `WireServer(responder=...)`,
and `ChatReplay`, Chat Completions answering each prompt by its id (streamed batches).

* OpenAI Batch API: `POST /v1/files` (multipart, purpose=batch) -> FileObject; `POST /v1/batches`
  -> Batch (`validating`); each `GET /v1/batches/{id}` moves it on (`in_progress` with growing
  `request_counts`, `finalizing`, `completed` with `output_file_id` / `error_file_id`);
  `GET /v1/files/{id}/content` -> the JSONL files, one line per request:
  `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.
* Anthropic Message Batches: `POST /v1/messages/batches` -> MessageBatch (`in_progress`); each
  `GET /v1/messages/batches/{id}` moves it on until `ended` with an absolute `results_url`;
  `GET .../results` -> JSONL `{"custom_id", "result": {"type": "succeeded", "message"} |
  {"type": "errored", "error": {"type": "error", "error": {...}}}}`.

`answer(body)` gives each request's text from the request body, or None to fail it; `polls` is
how many status reads a batch takes to end (`hold=True` keeps it running until released).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.wire import fixtures as fx
from tests.wire.server import RecordedRequest, Script

__all__ = ["AnthropicBatches", "ChatReplay", "OpenAIBatches"]

Answer = Callable[[dict[str, Any]], str | None]
_CREATED = 1_764_547_200  # 2025-12-01


def _last_user_text(body: dict[str, Any]) -> str:
    if "input" in body:  # a Responses request
        item = body["input"][-1]
        content = item["content"]
        return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)


def echo_answer(body: dict[str, Any]) -> str | None:
    """`question N` -> `answer N`; `question bad...` fails."""
    text = _last_user_text(body)
    if "bad" in text:
        return None
    return text.replace("question", "answer")


class _Replay:
    def __init__(self, answer: Answer = echo_answer, *, polls: int = 3) -> None:
        self.answer = answer
        self.polls = polls
        self.hold = False
        self.lock = threading.Lock()
        self.created = 0
        self.status_reads = 0
        self.bodies: list[dict[str, Any]] = []  # every request line the client submitted

    def __call__(self, req: RecordedRequest) -> Script:
        with self.lock:
            return self.route(req)

    def route(self, req: RecordedRequest) -> Script:
        raise NotImplementedError


class OpenAIBatches(_Replay):
    def __init__(self, answer: Answer = echo_answer, *, polls: int = 3) -> None:
        super().__init__(answer, polls=polls)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.uploaded: list[dict[str, Any]] = []  # the submitted JSONL lines

    def route(self, req: RecordedRequest) -> Script:
        path, method = req.path, req.method
        if method == "POST" and path == "/v1/files":
            return self._upload(req)
        if method == "POST" and path == "/v1/batches":
            return self._create(req.json)
        if method == "GET" and path.startswith("/v1/batches/"):
            return Script(body=self._advance(path.rsplit("/", 1)[1]))
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            fid = path.split("/")[3]
            return Script(body=self.files[fid], content_type="application/octet-stream")
        return Script(
            status=404, body={"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}
        )

    def _upload(self, req: RecordedRequest) -> Script:
        head = f"Content-Type: {req.headers['content-type']}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + req.body)
        data, purpose = b"", ""
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "file":
                data = payload
            elif name == "purpose":
                purpose = payload.decode()
        fid = f"file-wire{len(self.files) + 1}"
        self.files[fid] = data
        return Script(
            body={
                "id": fid,
                "object": "file",
                "bytes": len(data),
                "created_at": _CREATED,
                "filename": "lmstream-batch.jsonl",
                "purpose": purpose,
                "status": "processed",
            }
        )

    def _create(self, body: dict[str, Any]) -> Script:
        self.created += 1
        bid = f"batch_wire{self.created}"
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines() if line.strip()]
        self.uploaded.extend(lines)
        out, err = [], []
        for n, line in enumerate(lines):
            text = self.answer(line["body"])
            row: dict[str, Any] = {"id": f"batch_req_{n}", "custom_id": line["custom_id"], "error": None}
            if text is None:
                error = {"message": "Invalid 'messages': bad request.", "type": "invalid_request_error"}
                row["response"] = {"status_code": 400, "request_id": f"req_{n}", "body": {"error": error}}
                err.append(row)
            else:
                row["response"] = {"status_code": 200, "request_id": f"req_{n}", "body": _body(line, text)}
                out.append(row)
        self.batches[bid] = {
            "id": bid,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": _CREATED,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": None,
            "_reads": 0,
            "_out": out,
            "_err": err,
        }
        return Script(body=self._public(bid))

    def _advance(self, bid: str) -> dict[str, Any]:
        b = self.batches[bid]
        self.status_reads += 1
        if not self.hold:
            b["_reads"] += 1
        reads, total = b["_reads"], b["request_counts"]["total"]
        if reads >= self.polls:
            b["status"] = "completed"
            b["request_counts"] = {"total": total, "completed": len(b["_out"]), "failed": len(b["_err"])}
            for key, rows in (("output_file_id", b["_out"]), ("error_file_id", b["_err"])):
                if rows and b[key] is None:
                    fid = f"file-wire{len(self.files) + 1}"
                    self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    b[key] = fid
        elif reads >= 1:
            b["status"] = "in_progress"
            b["request_counts"] = {"total": total, "completed": len(b["_out"]) * reads // self.polls, "failed": 0}
        return self._public(bid)

    def _public(self, bid: str) -> dict[str, Any]:
        return {k: v for k, v in self.batches[bid].items() if not k.startswith("_")}


def _body(line: dict[str, Any], text: str) -> dict[str, Any]:
    model = line["body"]["model"]
    if line["url"] == "/v1/responses":
        return {
            "id": "resp_wire1",
            "object": "response",
            "created_at": _CREATED,
            "status": "completed",
            "model": model,
            "output": [
                {
                    "id": "msg_wire1",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 2,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 12,
            },
        }
    return {
        "id": "chatcmpl-wire1",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


class AnthropicBatches(_Replay):
    def __init__(self, base_url: Callable[[], str], answer: Answer = echo_answer, *, polls: int = 3) -> None:
        super().__init__(answer, polls=polls)
        self.base_url = base_url
        self.batches: dict[str, dict[str, Any]] = {}

    def route(self, req: RecordedRequest) -> Script:
        path, method = req.path, req.method
        if method == "POST" and path == "/v1/messages/batches":
            return self._create(req.json)
        if method == "GET" and path.endswith("/results"):
            rows = self.batches[path.split("/")[4]]["_rows"]
            return Script(body="".join(json.dumps(r) + "\n" for r in rows), content_type="application/binary")
        if method == "GET" and path.startswith("/v1/messages/batches/"):
            return Script(body=self._advance(path.rsplit("/", 1)[1]))
        error = {"type": "error", "error": {"type": "not_found_error", "message": f"no route {method} {path}"}}
        return Script(status=404, body=error)

    def _create(self, body: dict[str, Any]) -> Script:
        self.created += 1
        bid = f"msgbatch_wire{self.created}"
        rows = []
        for r in body["requests"]:
            self.bodies.append(r)
            text = self.answer(r["params"])
            if text is None:
                error = {"type": "invalid_request_error", "message": "messages: bad request"}
                result: dict[str, Any] = {"type": "errored", "error": {"type": "error", "error": error}}
            else:
                result = {"type": "succeeded", "message": _message(r["params"]["model"], text)}
            rows.append({"custom_id": r["custom_id"], "result": result})
        self.batches[bid] = {
            "id": bid,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {"processing": len(rows), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": None,
            "created_at": "2025-12-01T00:00:00Z",
            "expires_at": "2025-12-02T00:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
            "_reads": 0,
            "_rows": rows,
        }
        return Script(body=self._public(bid))

    def _advance(self, bid: str) -> dict[str, Any]:
        b = self.batches[bid]
        self.status_reads += 1
        if not self.hold:
            b["_reads"] += 1
        if b["_reads"] >= self.polls:
            ok = sum(1 for r in b["_rows"] if r["result"]["type"] == "succeeded")
            b["processing_status"] = "ended"
            b["ended_at"] = "2025-12-01T00:10:00Z"
            b["request_counts"] = {"processing": 0, "succeeded": ok, "errored": len(b["_rows"]) - ok,
                                   "canceled": 0, "expired": 0}  # fmt: skip
            b["results_url"] = f"{self.base_url()}/v1/messages/batches/{bid}/results"
        return self._public(bid)

    def _public(self, bid: str) -> dict[str, Any]:
        return {k: v for k, v in self.batches[bid].items() if not k.startswith("_")}


def _message(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "msg_wire1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 2,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


class ChatReplay:
    """Chat Completions answering each prompt `question <id>` with `answer <id>`.

    Requests number `storm` (in arrival order) get 429 with `Retry-After`; ids in `bad` fail
    with 400 on their first attempt (so `--retry-failed` can succeed). Thread-safe counts."""

    def __init__(self, *, storm: range = range(0), bad: frozenset[int] = frozenset(), pace: float = 0.0) -> None:
        self.storm = storm
        self.bad = bad
        self.pace = pace
        self.lock = threading.Lock()
        self.arrivals = 0
        self.rate_limited = 0
        self.sent: Counter[str] = Counter()  # id -> requests that reached the server
        self.answered: Counter[str] = Counter()  # id -> 200 answers started
        self.failed_once: set[str] = set()

    def __call__(self, req: RecordedRequest) -> Script:
        rid = req.json["messages"][-1]["content"].removeprefix("question ")
        with self.lock:
            n = self.arrivals
            self.arrivals += 1
            self.sent[rid] += 1
            if n in self.storm:
                self.rate_limited += 1
                return Script(status=429, headers={"retry-after": "0.05"}, body=fx.openai_error_for(429))
            if int(rid) in self.bad and rid not in self.failed_once:
                self.failed_once.add(rid)
                return Script(status=400, body=fx.openai_error_for(400))
            self.answered[rid] += 1
        text = ("answer", f" {rid}")
        return Script(chunks=fx.openai_chat_text(text, usage=fx.openai_chat_usage(10, 2)), delay_between=self.pace)
