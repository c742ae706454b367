"""One provider table: each invoker class says its prefix, tracing name and default URL; the
rest of the package reads them from there, so a new provider is one module plus one line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import lmstream
from lmstream import invokers
from lmstream._otel_content import input_messages, provider_name, server_of
from lmstream.invokers import INVOKER_CLASSES, PROVIDER_MODULES, BaseLMInvoker
from lmstream.prompt import Message


def test_every_class_in_the_table_lives_in_its_module_and_carries_its_prefix() -> None:
    providers = invokers.providers()
    for module, names in PROVIDER_MODULES.items():
        for name in names:
            cls = getattr(invokers, name)
            assert cls.__name__ == name and cls.__module__ == f"lmstream.invokers.{module}"
            assert issubclass(cls, BaseLMInvoker)
            for prefix in (cls.provider, *cls.aliases):
                assert providers[prefix] == name, (prefix, name)
    assert invokers.PROVIDERS is providers
    assert len(set(providers.values())) == len(INVOKER_CLASSES)  # every class is reachable by a prefix


def test_the_type_checking_imports_name_exactly_the_table() -> None:
    tree = ast.parse(Path(invokers.__file__).read_text(encoding="utf-8"))
    typed = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in PROVIDER_MODULES
        for alias in node.names
    }
    table = {(module, name) for module, names in PROVIDER_MODULES.items() for name in names}
    missing = sorted(table - typed)
    assert not missing, "add under TYPE_CHECKING in lmstream/invokers/__init__.py: " + "; ".join(
        f"from .{m} import {n} as {n}" for m, n in missing
    )
    assert typed <= table


def test_the_package_face_and_the_builder_derive_from_the_table() -> None:
    assert set(INVOKER_CLASSES) <= set(lmstream.__all__)
    for name in INVOKER_CLASSES:
        assert getattr(lmstream, name) is getattr(invokers, name)
    # the known providers a bad id lists are the table's prefixes
    try:
        lmstream.build_lm_invoker("nope/x")
    except lmstream.ConfigurationError as exc:
        assert all(p in str(exc) for p in invokers.providers())
    else:  # pragma: no cover
        raise AssertionError("an unknown provider must be refused")


def test_tracing_reads_name_and_url_from_the_class() -> None:
    class LineProtocolLMInvoker(BaseLMInvoker):
        provider: ClassVar[str] = "line-protocol"
        tracing_name: ClassVar[str] = "line_ai"
        default_base_url: ClassVar[str | None] = "https://api.line.example:8443/v1"
        system_apart: ClassVar[bool] = True

    inv: Any = LineProtocolLMInvoker("m1")
    assert provider_name(inv) == "line_ai"
    assert server_of(inv) == ("api.line.example", 8443)
    system, history = input_messages(inv, [Message.system("Be brief."), Message.user("Hi")])
    assert system == [{"type": "text", "content": "Be brief."}] and [m["role"] for m in history] == ["user"]
    inv2: Any = LineProtocolLMInvoker("m2", base_url="http://127.0.0.1:9000")
    assert server_of(inv2) == ("127.0.0.1", 9000) and provider_name(inv2) == "line_ai"


def test_import_lmstream_still_imports_no_provider_module() -> None:
    code = "import sys, lmstream; print(sorted(m for m in sys.modules if m.startswith('lmstream.invokers.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(out) == ["lmstream.invokers.base", "lmstream.invokers.params"]
