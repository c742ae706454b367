"""The first call to a plain http:// server (llama.cpp, vLLM, Ollama on this machine) does not load
the CA bundle (0.02-0.2 s, more than the rest of the call): no TLS is ever made. Verification
stays on, so an https:// request from such a client fails instead of going unverified."""

from __future__ import annotations

import ssl

from lmstream import build_lm_invoker
from lmstream.invokers._http import ClientCache


async def test_a_plain_http_invoker_loads_no_ca_bundle_and_stays_verifying() -> None:
    inv = build_lm_invoker("openai-compatible/m", config={"base_url": "http://127.0.0.1:9/v1"})
    shard = inv._clients.acquire()  # type: ignore[attr-defined]
    try:
        ctx = shard.client._transport._pool._ssl_context
        assert isinstance(ctx, ssl.SSLContext)
        assert ctx.cert_store_stats()["x509_ca"] == 0, "no CA bundle loaded for plain http"
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname  # TLS would fail, never go unverified
    finally:
        ClientCache.release(shard)
        await inv.aclose()  # type: ignore[attr-defined]


async def test_an_https_invoker_verifies_against_the_ca_bundle() -> None:
    inv = build_lm_invoker("openai-compatible/m", config={"base_url": "https://example.invalid/v1"})
    shard = inv._clients.acquire()  # type: ignore[attr-defined]
    try:
        assert shard.client._transport._pool._ssl_context.cert_store_stats()["x509_ca"] > 10
    finally:
        ClientCache.release(shard)
        await inv.aclose()  # type: ignore[attr-defined]
