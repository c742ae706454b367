"""Cost of an MCP tool call through lmstream's `MCPTools` vs the `mcp` SDK's own `ClientSession.call_tool`.

    python benchmarks/bench_mcp.py                 # 200 calls per row, stdio and streamable HTTP
    python benchmarks/bench_mcp.py --calls 500

Both rows of a transport talk to the same server process, alternating call by call (tests/mcp_server.py, the SDK's
MCPServer), calling `add(a, b)`; lmstream's row runs `Tool.run` (the path the tool loop takes:
progress wiring, timeout, result mapping). Prints one markdown table: median and p95 latency per
call and lmstream's median as a ratio of the SDK's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVER = str(ROOT / "tests" / "mcp_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pair(
    sdk: Callable[[], Awaitable[Any]], ours: Callable[[], Awaitable[Any]], n: int
) -> tuple[list[float], ...]:
    """Both paths, alternating call by call, so machine noise falls on both alike."""
    for _ in range(10):  # warm-up
        await sdk()
        await ours()
    a: list[float] = []
    b: list[float] = []
    for _ in range(n):
        for call, out in ((sdk, a), (ours, b)):
            t0 = time.perf_counter()
            await call()
            out.append((time.perf_counter() - t0) * 1000)
    return a, b


async def _row(label: str, make: Callable[[], Any], n: int) -> list[tuple[str, list[float]]]:
    from lmstream.mcp import MCPTools

    tools_cm: MCPTools = make()
    async with tools_cm as tools:
        add = next(t for t in tools if t.name == "add")
        session = tools_cm._session  # the same connection, called through the SDK directly
        sdk, ours = await _pair(
            lambda: session.call_tool("add", {"a": 1, "b": 2}), lambda: add.run({"a": 1, "b": 2}), n
        )
    return [(f"{label}: mcp SDK ClientSession.call_tool", sdk), (f"{label}: lmstream MCPTools tool.run", ours)]


async def main(n: int) -> None:
    from lmstream.mcp import MCPTools

    rows = await _row("stdio", lambda: MCPTools.stdio(sys.executable, [SERVER, "stdio"]), n)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        rows += await _row("http", lambda: MCPTools.http(f"http://127.0.0.1:{port}/mcp"), n)
    finally:
        proc.terminate()
        proc.wait(5)
    print(f"mcp {importlib.metadata.version('mcp')}, {n} calls per row, python {sys.version.split()[0]}\n")
    print("| path | median ms | p95 ms | median vs SDK |")
    print("|---|---:|---:|---:|")
    base: float | None = None
    for label, ms in rows:
        med = statistics.median(ms)
        p95 = sorted(ms)[int(len(ms) * 0.95) - 1]
        base = med if "SDK" in label else base
        ratio = f"{med / base:.2f}x" if base else ""
        print(f"| {label} | {med:.2f} | {p95:.2f} | {ratio} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    asyncio.run(main(p.parse_args().calls))
