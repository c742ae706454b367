"""An upstream that echoes the operator's key (and a base URL with credentials) into its error
text (issue 31, item 5): the text never reaches a `/v1/stream` client, nor an OpenTelemetry span
with content capture off; the server log and every other exit use the one redaction."""

from __future__ import annotations

import httpx

from lmstream import RetryConfig
from tests.otel_support import telemetry
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire.server import Script, WireServer

SECRET = "sk-upstreamSECRET0123456789"
CRED_URL = "http://admin:hunter2pass@10.1.2.3:8080/v1"
ECHO = {"error": {"message": f"invalid key: Authorization: Bearer {SECRET}; upstream {CRED_URL}", "type": "auth"}}


def _leaks(text: str) -> list[str]:
    return [s for s in (SECRET, "hunter2pass") if s in text]


def test_v1_stream_never_sends_an_upstream_echo_of_the_key() -> None:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(status=400, body=ECHO))
        proc = wire_processor(srv)
        proc.lm_invoker.retry_config = RetryConfig(max_retries=0)
        with ServedApp(proc) as app, httpx.Client(timeout=20) as c:
            for _ in range(3):
                r = c.post(f"{app.url}/v1/stream", json={"prompt": "hi"})
                assert r.status_code == 200 and "event: error" in r.text, r.text
                assert not _leaks(r.text), r.text
                assert "[redacted]" in r.text


async def test_spans_never_carry_an_upstream_echo_of_the_key() -> None:
    from lmstream import LMRequestProcessor, PromptBuilder, build_lm_invoker

    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(status=400, body=ECHO))
        with telemetry() as t:
            inv = build_lm_invoker(
                "openai-compatible/m",
                credentials=SECRET,
                config={"base_url": f"{srv.base_url}/v1"},
            )
            inv.retry_config = RetryConfig(max_retries=0)
            lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv)
            try:
                await lmrp.process(q="hi")
            except Exception:
                pass
            await inv.aclose()
            dumped = [s.to_json() for s in t.spans()]
    assert dumped and any('"error.type"' in d for d in dumped)
    assert not [d for d in dumped if _leaks(d)]
