"""`lmstream "question"`: stream an answer token by token (embedded model by default)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from . import _json
from ._cli_hints import cli_message
from ._cli_options import JSON_OBJECT_SCHEMA, ModelOption, add_options, build_invoker, literal_template
from .errors import AttachmentError, ConfigurationError, LMStreamError, OutputParserError, PromptError
from .event_values import ResetValue
from .events import EventEmitter, EventType, StreamEventHandler
from .parsers import JSONOutputParser
from .processor import LMRequestProcessor
from .prompt import PromptBuilder
from .types import Attachment

#: this command's own options, after the shared model options
ANSWER_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(("--temperature",), "sampling temperature, 0 to 2", type=float, hyper="temperature"),
    ModelOption(("--api-key",), "the provider's API key (default: its environment variable)", config="api_key"),
)

EPILOG = """\
examples:
  lmstream "What should I do in Tokyo?"
  lmstream --events "Hi"                       # one JSON line per event
  lmstream --json "Describe Tokyo: its name and country"   # a JSON object (grammar-forced locally)
  lmstream --json --schema @city.json "Describe Tokyo"     # ... matching a JSON schema
  lmstream --model openai/gpt-4.1-nano "Hi"    # needs OPENAI_API_KEY
  lmstream --model openai-compatible/any --base-url http://127.0.0.1:8000/v1 "Hi"
  echo "Hi" | lmstream -
  lmstream --usage "Hi"                        # tokens and cost (USD) on stderr after the answer
  lmstream batch in.jsonl -o out.jsonl         # many prompts: see `lmstream batch --help`

exit codes: 0 success, 1 the provider or model failed, 2 bad input or configuration,
130 interrupted, 141 the output pipe was closed.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmstream",
        description="Stream a language model's answer token by token. The default model is embedded "
        "(SmolLM2-135M-Instruct via llama-cpp-python): no API key, no network.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompt", nargs="?", help="the question; '-' or nothing reads standard input")
    add_options(p, ANSWER_OPTIONS)
    p.add_argument(
        "--usage",
        action="store_true",
        help="after the answer, print tokens, time and cost (USD, when the model's price is known) to "
        "stderr (the default when stderr is a terminal)",
    )
    p.add_argument("--events", action="store_true", help="print every event as one JSON line (value, level, type, ...)")
    p.add_argument(
        "--file",
        action="append",
        dest="files",
        metavar="PATH",
        default=[],
        help="attach a file (png, jpeg, gif, webp, pdf, wav, mp3, plain text; the type is read from its "
        "bytes); repeatable. The embedded model reads text only: use a model that takes the file's kind",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="parse the answer as JSON and print it (answer streams to stderr); on the local model the "
        "answer is a JSON object, enforced by a grammar",
    )
    p.add_argument(
        "--schema",
        metavar="JSON|@FILE",
        help="with --json: the JSON schema the answer must match, inline or @path/to/schema.json "
        "(e.g. '{\"properties\": {\"name\": {\"type\": \"string\"}}, \"required\": [\"name\"]}')",
    )
    return p


def _schema(args: argparse.Namespace) -> dict[str, Any] | None:
    """`--schema` read and checked: a JSON object, inline or from a file named after `@`."""
    if args.schema is None:
        return None
    if not args.json:
        raise ConfigurationError("--schema needs --json (the schema is what the JSON answer must match)")
    text = args.schema
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"--schema: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        schema = _json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"--schema is not JSON ({exc}); give a JSON schema object or @file.json") from None
    if not isinstance(schema, dict):
        raise ConfigurationError("--schema must be a JSON object (a JSON schema)")
    schema.setdefault("type", "object")
    return schema


class _Lines:
    """Tracks which output streams streamed text left mid-line, so a failure message that
    follows starts on a line of its own."""

    def __init__(self) -> None:
        self.open: dict[int, TextIO] = {}

    def write(self, out: TextIO, text: str) -> None:
        out.write(text)
        out.flush()
        if text:
            if text.endswith("\n"):
                self.open.pop(id(out), None)
            else:
                self.open[id(out)] = out

    def end(self) -> None:
        for out in self.open.values():
            with contextlib.suppress(OSError, ValueError):  # a closed pipe has no line to end
                out.write("\n")
                out.flush()
        self.open.clear()


def _attachments(paths: list[str]) -> list[Attachment]:
    """`--file` paths read and type-checked before any model is loaded."""
    out = []
    for path in paths:
        try:
            out.append(Attachment.from_path(path))
        except OSError as exc:
            raise ConfigurationError(f"--file {path}: {exc.strerror or exc}") from exc
        except AttachmentError as exc:
            raise ConfigurationError(f"--file {path}: {exc}") from exc
    return out


async def _run(args: argparse.Namespace, question: str, lines: _Lines | None = None) -> int:
    files = _attachments(getattr(args, "files", None) or [])

    lines = lines or _Lines()
    invoker = build_invoker(args, ANSWER_OPTIONS)
    schema = _schema(args)
    if schema is not None:
        invoker.set_response_schema(schema)
    elif args.json and invoker.model_id.startswith("local/"):
        invoker.set_response_schema(JSON_OBJECT_SCHEMA)
    # The user's text goes in as a value, so braces in it are never treated as placeholders.
    lmrp = LMRequestProcessor(
        PromptBuilder(system_template=literal_template(args.system), user_template="{prompt}"),
        invoker,
        JSONOutputParser() if args.json else None,
    )
    handler = StreamEventHandler(serialize=args.events)  # JSON lines with --events, else Event objects
    emitter = EventEmitter([handler])
    task = asyncio.create_task(lmrp.process(prompt=question, extra_contents=files or None, event_emitter=emitter))
    text_out = sys.stderr if args.json else sys.stdout
    done: dict[str, Any] | None = None
    try:
        async for event in handler.stream():
            if args.events:
                lines.write(sys.stdout, event + "\n")
            elif event.type == EventType.RESPONSE:
                lines.write(text_out, event.value)
            elif event.type == EventType.THINKING:
                lines.write(sys.stderr, event.value)
            elif event.type == EventType.RESET:  # a fallback model took over: say so, on a line of its own
                lines.end()
                lines.write(sys.stderr, reset_note(event.value) + "\n")
            elif event.type == EventType.DONE:
                done = event.metadata
        result = await task
    finally:
        if not task.done():
            task.cancel()
        await emitter.close()
    if args.json:
        sys.stderr.write("\n")
        sys.stdout.write(_json.dumps(result) + "\n")
    elif not args.events:
        sys.stdout.write("\n")
    if done is not None and (args.usage or sys.stderr.isatty()):
        sys.stdout.flush()
        sys.stderr.write(usage_line(done) + "\n")
    return 0


def reset_note(value: ResetValue) -> str:
    """The terminal's line for a `reset` event: who took over, and whether the answer restarts."""
    how = "the answer restarts on the next line" if value["discarded"] else "it continues the answer"
    return f"[switched to {value['to']} after {value['from']} failed: {how}]"


def usage_line(done: dict[str, Any]) -> str:
    """`[12 tokens in · 30 out · 1.20 s · $0.000034]` from a `done` event's metadata."""
    usage = done.get("usage") or {}
    cost = usage.get("cost")
    counts = [usage.get("input_tokens"), usage.get("output_tokens")]
    n_in, n_out = ("?" if n is None else n for n in counts)  # None: the provider did not say
    parts = [f"{n_in} tokens in", f"{n_out} out"]
    if done.get("duration") is not None:
        parts.append(f"{done['duration']:.2f} s")
    parts.append("cost unknown" if cost is None else f"${cost['total']:.6f}")
    return "[" + " · ".join(parts) + "]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # subcommand: its own parser, imported only when used
        from .server.cli import main as serve

        return serve(argv[1:])
    if argv[:1] == ["batch"]:
        from .batch.cli import main as batch_main

        return batch_main(argv[1:])
    if argv[:1] == ["worker"]:
        from .redis.cli import main as worker_main

        def mcp_tools() -> Any:  # the worker's --mcp: opened as `lmstream serve` opens it
            from .server.mcp_tools import mcp_lifespan

            return mcp_lifespan

        return worker_main(argv[1:], tools=mcp_tools)
    args = _parser().parse_args(argv)
    question = args.prompt
    if question is None or question == "-":
        if sys.stdin is None or sys.stdin.isatty():
            _parser().error("give a prompt, or '-' with text on standard input")
        question = sys.stdin.read().strip()
    if not question:
        _parser().error("the prompt is empty")
    lines = _Lines()
    try:
        code = asyncio.run(_run(args, question, lines))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`lmstream ... | head`): stop quietly, and keep the interpreter's
        # final flush of stdout from failing again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (ConfigurationError, PromptError) as exc:
        lines.end()
        print(f"lmstream: error: {cli_message(exc, args.model)}", file=sys.stderr)
        return 2
    except OutputParserError as exc:  # the model's answer, not the user's input, is at fault
        lines.end()
        print(f"lmstream: {exc}", file=sys.stderr)
        return 1
    except LMStreamError as exc:
        lines.end()
        print(f"lmstream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        lines.end()
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
