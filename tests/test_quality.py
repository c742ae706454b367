"""The package stays typed, lint-clean and cheap to import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def test_ruff_clean():
    proc = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "benchmarks", "examples"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean():
    proc = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_does_not_load_sdks_or_llama():
    code = (
        "import sys, lmstream\n"
        "heavy = [m for m in ('openai', 'anthropic', 'google.genai', 'llama_cpp', 'httpx', 'pydantic') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"import lmstream loaded: {proc.stdout}"


def test_mypy_strict_catches_typos_in_a_user_script(tmp_path):
    """A user's editor and mypy see real types: events are `Event`, outputs follow the parser."""
    script = tmp_path / "user.py"
    script.write_text(
        "from lmstream import EventEmitter, JSONOutputParser, LMRequestProcessor, PromptBuilder, build_lm_invoker\n"
        "async def main() -> None:\n"
        "    lmrp = LMRequestProcessor(PromptBuilder(user_template='{q}'), build_lm_invoker('local/smollm2-135m'))\n"
        "    async with lmrp.stream(q='hi') as stream:\n"
        "        async for event in stream:\n"
        "            print(event.valeu)\n"
        "    out = await stream.result()\n"
        "    print(out.txet)\n"
        "    done = await lmrp.process(q='hi')\n"
        "    print(done.text, done.usage.output_tokens)\n"
        "    emitter = EventEmitter.with_stream_handler()\n"
        "    async for ev in emitter.stream():\n"
        "        print(ev.levle)\n"
        "    parsed = LMRequestProcessor(PromptBuilder(), build_lm_invoker('x/y'), JSONOutputParser())\n"
        "    reveal_type(await parsed.process())\n"
        "from lmstream import tool\n"
        "@tool\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "reveal_type(add(1, 2))\n"
        "add('one', 2)\n"
    )
    proc = subprocess.run([_tool("mypy"), "--strict", str(script)], cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout
    assert '"Event" has no attribute "valeu"' in out, out
    assert '"LMOutput" has no attribute "txet"' in out, out
    assert '"Event" has no attribute "levle"' in out, out
    assert 'Revealed type is "Any"' in out, out
    assert 'Revealed type is "int"' in out or 'Revealed type is "builtins.int"' in out, out  # @tool keeps the signature
    assert 'Argument 1 to "__call__" of "Tool" has incompatible type "str"' in out, out
    assert out.count("error:") == 4, out


def test_mypy_strict_types_build_lm_request_processor_by_its_parser(tmp_path):
    """`build_lm_request_processor(...)` is typed like the constructor: no parser -> `LMOutput`."""
    script = tmp_path / "user.py"
    script.write_text(
        "from lmstream import build_lm_request_processor\n"
        "async def main() -> None:\n"
        "    lmrp = build_lm_request_processor('local/smollm2-135m', user_template='{q}')\n"
        "    out = await lmrp.process(q='hi')\n"
        "    print(out.txet)\n"
        "    async with lmrp.stream(q='hi') as stream:\n"
        "        pass\n"
        "    print((await stream.result()).usage.output_tokenz)\n"
        "    parsed = build_lm_request_processor('local/smollm2-135m', output_parser_type='json')\n"
        "    reveal_type(await parsed.process())\n"
    )
    proc = subprocess.run([_tool("mypy"), "--strict", str(script)], cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout
    assert '"LMOutput" has no attribute "txet"' in out, out
    assert '"TokenUsage" has no attribute "output_tokenz"' in out, out
    assert 'Revealed type is "Any"' in out, out
    assert out.count("error:") == 2, out
