"""`lmstream serve --mcp SPEC`: MCP servers' tools for the served processor, for the app's lifetime.

A spec is `stdio:COMMAND ARGS...` (a subprocess) or an `http(s)://.../mcp` URL (streamable HTTP).
The connections open in the app's lifespan (so they live and close on the server's own loop) and
the processor's tools are set again whenever a server says its tool list changed.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from ..errors import ConfigurationError
from ..mcp import MCPTools, MCPToolset
from ..processor import LMRequestProcessor

__all__ = ["mcp_lifespan", "parse_mcp_spec"]


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


def mcp_lifespan(
    processor: LMRequestProcessor[Any],
    specs: Sequence[str],
    approve: Sequence[str] = (),
    approve_all: bool = False,
    timeout: float = 60.0,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """What `lmstream serve` runs for the app's lifetime (`create_app(lifespan=...)`): open
    `specs` and give their tools to `processor` beside its own, set again when a server's list
    changes. `approve` names the tools that need a person's approval (all with `approve_all`),
    the processor's own included: those get an approving copy, the caller's tool is left as it
    is. A name that no server offers is an error at start-up, not a silently unguarded tool."""
    wanted: Any = True if approve_all else frozenset(approve)
    servers = [parse_mcp_spec(s, wanted, timeout) for s in specs]

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            toolsets: list[MCPToolset] = [await stack.enter_async_context(s) for s in servers]
            own = [
                dataclasses.replace(t, requires_approval=True) if approve_all or t.name in approve else t
                for t in processor.tools
            ]

            def apply(_: Any = None) -> None:
                processor.set_tools([*own, *(t for ts in toolsets for t in ts)])

            apply()
            names = {t.name for t in processor.tools}
            unknown = sorted(set(approve) - names)
            if unknown:
                raise ConfigurationError(
                    f"--approve-tools names no tool offered: {', '.join(unknown)}; offered: {', '.join(sorted(names))}"
                )
            for ts in toolsets:
                ts.on_change(apply)
            yield

    return lifespan
