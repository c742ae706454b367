"""`lmstream serve --mcp SPEC`: MCP servers' tools for the served processor, for the app's lifetime.

A spec is `stdio:COMMAND ARGS...` (a subprocess) or an `http(s)://.../mcp` URL (streamable HTTP).
The connections open in the app's lifespan (so they live and close on the server's own loop) and
the processor's tools are set again whenever a server says its tool list changed.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ..errors import ConfigurationError
from ..mcp import MCPTools, MCPToolset
from ..processor import LMRequestProcessor

__all__ = ["attach_mcp", "parse_mcp_spec"]


def parse_mcp_spec(spec: str, requires_approval: Any, timeout: float) -> MCPTools:
    """`stdio:python -m my_server` or `http://127.0.0.1:9000/mcp`."""
    if spec.startswith("stdio:"):
        argv = shlex.split(spec[len("stdio:") :])
        if not argv:
            raise ConfigurationError("--mcp stdio: needs a command, e.g. --mcp 'stdio:python -m my_server'")
        return MCPTools.stdio(argv[0], argv[1:], requires_approval=requires_approval, timeout=timeout)
    if spec.startswith(("http://", "https://")):
        return MCPTools.http(spec, requires_approval=requires_approval, timeout=timeout)
    raise ConfigurationError(
        f"--mcp {spec!r}: give 'stdio:COMMAND ARGS' or a streamable-HTTP URL such as http://127.0.0.1:9000/mcp"
    )


def attach_mcp(
    app: Any,
    processor: LMRequestProcessor[Any],
    specs: Sequence[str],
    approve: Sequence[str] = (),
    approve_all: bool = False,
    timeout: float = 60.0,
) -> None:
    """Open `specs` when `app` starts and give their tools to `processor` (beside its own).
    `approve` names the tools that need a person's approval (all of them with `approve_all`);
    a name that no server offers is an error at start-up, not a silently unguarded tool."""
    wanted: Any = True if approve_all else frozenset(approve)
    servers = [parse_mcp_spec(s, wanted, timeout) for s in specs]
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            toolsets: list[MCPToolset] = [await stack.enter_async_context(s) for s in servers]
            own = list(processor.lm_invoker.tools)

            def apply(_: Any = None) -> None:
                processor.set_tools([*own, *(t for ts in toolsets for t in ts)])

            apply()
            names = {t.name for t in processor.lm_invoker.tools}
            for t in own:  # the flags cover the processor's own tools too
                if approve_all or t.name in approve:
                    t.requires_approval = True
            unknown = sorted(set(approve) - names)
            if unknown:
                raise ConfigurationError(
                    f"--approve-tools names no tool offered: {', '.join(unknown)}; offered: {', '.join(sorted(names))}"
                )
            for ts in toolsets:
                ts.on_change(apply)
            async with inner(a) as state:
                yield state

    app.router.lifespan_context = lifespan
