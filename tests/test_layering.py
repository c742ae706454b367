"""The shape of the package, enforced: imports run one way (docs/architecture.md).

Every import counts: at module top, inside functions (lazy) and under `TYPE_CHECKING`, since
each is an arrow a reader has to follow. Importing a submodule is not counted as importing its
parent package's `__init__` (that would make everything depend on `lmstream/__init__.py`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import lmstream

ROOT = Path(lmstream.__file__).parent

#: Layers, lowest first: a module may import its own layer and the layers below, never above.
LAYERS: list[tuple[str, ...]] = [
    # data and pure helpers: no network, no events (`cost` loads its price table on a thread, once)
    (
        "_json",
        "_redact",
        "_version",
        "_mime",
        "event_values",
        "types",
        "errors",
        "retry",
        "structured",
        "prompt",
        "parsers",
        "cost",
        "budget",
    ),
    ("_tool_schema",),  # a tool's parameter schemas, read from its signature
    # tracing, the side room: reads the data types, imports nothing else of lmstream
    ("otel", "_otel_spans", "_otel_content"),
    ("events",),
    ("_observe",),  # the seam the core calls; it loads `otel` on first use
    ("engine", "sync"),  # the request engine, and the synchronous face of a request
    ("tools", "mcp"),
    ("approval",),
    ("invokers",),
    ("cache",),  # the response cache: stored answers and shared generations (knows invokers by attribute)
    ("batch",),  # many requests through a processor (which it knows by a protocol)
    ("processor", "testing", "window"),
    ("factory",),  # build_lm_request_processor: a model id and templates to a processor
    ("chat_registry",),  # the seam between the server and the stores behind it (events, positions)
    ("protocols",),  # pure wire mappers (UI message stream, OpenAI-compatible): no web framework
    ("_cli_options", "_cli_hints", "batch.cli"),  # what the commands share
    ("__init__",),  # the public face
    ("server", "redis"),  # transports: consume events and the processor
    ("cli", "__main__"),  # the composition root: the one place server and Redis are wired together
]

#: Arrows that break the rule today, each with the reason it is still there.
EXCEPTIONS: dict[tuple[str, str], str] = {}

#: Modules that sit in a higher layer than the rest of their package, left out of the package-level
#: cycle check (each is still checked module by module above).
PACKAGE_EXCEPTIONS: dict[str, str] = {
    "batch.cli": "`lmstream batch`, a command in the batch package: it builds a processor, which offers batch()",
}

#: The places where `server/` and `redis/` may meet (the CLI wires them).
WIRING = {"cli", "server.cli"}

TRACING = {"otel", "_otel_spans", "_otel_content"}
DATA = set(LAYERS[0])


def modules() -> dict[str, Path]:
    """'engine.lifecycle' -> its file ('__init__' for the package itself)."""
    out: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1] or ("__init__",)
        out[".".join(parts)] = path
    return out


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names if a.name == "lmstream" or a.name.startswith("lmstream.")]
        for b in bases:
            yield b.removeprefix("lmstream").lstrip(".") or "__init__"
        return
    if node.level == 0:
        if node.module is None or not (node.module == "lmstream" or node.module.startswith("lmstream.")):
            return
        package = node.module.removeprefix("lmstream").lstrip(".")
    else:
        here = [] if name == "__init__" else name.split(".")
        if path.name != "__init__.py":
            here = here[:-1]
        up = here[: len(here) - (node.level - 1)] if node.level > 1 else here
        package = ".".join([*up, *([node.module] if node.module else [])])
    for alias in node.names:  # `from . import otel` imports the module `otel`
        full = f"{package}.{alias.name}" if package else alias.name
        yield full if full in known else (package or "__init__")


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the lmstream modules it imports (resolved to the nearest known module)."""
    mods = modules()
    known = set(mods)
    edges: dict[str, frozenset[str]] = {}
    for name, path in mods.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for t in _targets(name, path, node, known):
                    while t not in known and "." in t:
                        t = t.rsplit(".", 1)[0]
                    if t in known and t != name:
                        found.add(t)
        edges[name] = frozenset(found)
    return edges


def layer_of(module: str) -> int:
    best, rank = "", -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    assert rank >= 0, f"lmstream.{module} is in no layer: add it to LAYERS in tests/test_layering.py"
    return rank


def test_every_module_has_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"lmstream.{a} (layer {layer_of(a)}) imports lmstream.{b} (layer {layer_of(b)})"
        for a, targets in graph().items()
        for b in sorted(targets)
        if layer_of(b) > layer_of(a) and (a, b) not in EXCEPTIONS
    ]
    assert not upward, "\n".join(upward)


def test_the_listed_exceptions_are_still_needed() -> None:
    stale = [f"{a} -> {b}" for a, b in EXCEPTIONS if b not in graph().get(a, frozenset())]
    assert not stale, f"remove from EXCEPTIONS: {stale}"


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return [*path[path.index(t) :], t]
            if t not in state and (found := visit(t)) is not None:
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)) is not None:
            raise AssertionError("import cycle: " + " -> ".join(f"lmstream.{c}" for c in cycle))


def test_packages_do_not_import_each_other_in_a_circle() -> None:
    """The same at package level: `engine`, `invokers`, `server`, ... each count as one node."""
    edges: dict[str, set[str]] = {}
    for a, targets in graph().items():
        if a in PACKAGE_EXCEPTIONS:
            continue
        pa = a.split(".")[0]
        edges.setdefault(pa, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != pa)
    done: set[str] = set()

    def visit(p: str, path: list[str]) -> None:
        for t in sorted(edges.get(p, ())):
            assert t not in path, "package cycle: " + " -> ".join([*path[path.index(t) :], t])
            if t not in done:
                visit(t, [*path, t])
        done.add(p)

    for p in sorted(edges):
        visit(p, [p])


def test_tracing_imports_only_the_data_types() -> None:
    for m in sorted(TRACING):
        extra = graph()[m] - DATA - TRACING
        assert not extra, f"lmstream.{m} imports {sorted(extra)}: tracing may read only {sorted(DATA)}"
    assert graph()["_observe"] <= DATA | {"otel"}, graph()["_observe"]


def test_server_and_redis_meet_only_where_the_cli_wires_them() -> None:
    crossing = [
        f"lmstream.{a} imports lmstream.{b}"
        for a, targets in graph().items()
        for b in sorted(targets)
        if {a.split(".")[0], b.split(".")[0]} == {"server", "redis"} and a not in WIRING and (a, b) not in EXCEPTIONS
    ]
    assert not crossing, "\n".join(crossing)


def _third_party_imports(module: str) -> set[str]:
    """The top-level names of every non-lmstream import in `module`'s file (lazy ones too)."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out - {"lmstream"}


def test_protocols_import_no_web_framework_and_no_redis() -> None:
    """The wire mappers are pure: the server frames and sends what they make, the worker runs the
    same chat turn, and neither framework reaches in here."""
    protocols = [m for m in graph() if m == "protocols" or m.startswith("protocols.")]
    assert len(protocols) > 1, protocols
    bad = {m: sorted(_third_party_imports(m) & {"starlette", "uvicorn", "redis", "httpx"}) for m in protocols}
    assert not any(bad.values()), bad


def test_server_and_redis_run_chat_turns_through_protocols() -> None:
    """One `run_chat_turn`: the server and the Redis worker both take a chat turn from `protocols`."""
    for package in ("server", "redis"):
        users = [m for m, targets in graph().items() if m.split(".")[0] == package and "protocols.chat" in targets]
        assert users, f"lmstream.{package} does not run chat turns through lmstream.protocols.chat"


def test_adapters_know_nothing_of_requests_or_events() -> None:
    """The engine alone runs a model call: an adapter is a stateless leaf that turns messages and
    a call's parameters into deltas. It imports no request lifecycle, no request stream, no
    events and no processor (a standalone `invoke()` hands the call to `engine.call`)."""
    banned = ("engine.lifecycle", "engine.request_stream", "events", "processor")
    leaks = [
        f"lmstream.{m} imports lmstream.{t}"
        for m, targets in graph().items()
        if m == "invokers" or m.startswith("invokers.")
        for t in sorted(targets)
        if any(t == b or t.startswith(b + ".") for b in banned)
    ]
    assert not leaks, "\n".join(leaks)
