"""A real MCP server (the official SDK's MCPServer) for the MCP tests: stdio or streamable HTTP.

    python tests/mcp_server.py stdio
    python tests/mcp_server.py http PORT

`LMSTREAM_MCP_MARK` names a file where the server notes what it saw (a cancelled call).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("lmstream-test")
MARK = os.environ.get("LMSTREAM_MCP_MARK", "")


def mark(text: str) -> None:
    if MARK:
        with open(MARK, "a") as f:
            f.write(text + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
async def count(n: int, ctx: Context) -> str:
    """Count to n, reporting progress."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await asyncio.sleep(0.01)
    return f"counted to {n}"


@server.tool()
def fail(why: str) -> str:
    """Always fails (an error result: the model sees the text)."""
    raise ToolError(f"cannot: {why}")


@server.tool()
async def die() -> str:
    """The server process dies mid-call."""
    await asyncio.sleep(0.05)
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answers; notes when it is cancelled."""
    mark("hang started")
    try:
        await asyncio.sleep(3600)
    except BaseException:
        mark("hang cancelled")
        raise
    return "never"


@server.tool()
def picture() -> Image:
    """A 1x1 PNG."""
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005fe02fea7d6a5f70000000049454e44ae426082"
    )
    return Image(data=png, format="png")


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds a tool named `extra` and tells the client its tool list changed."""

    def extra() -> str:
        """A tool that appeared later."""
        return "extra!"

    server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", port=int(sys.argv[2]))
