"""The accumulator as a pure state machine: deltas in, (type, value, block) events out; no I/O."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from lmstream.engine.accumulator import Accumulator
from lmstream.engine.deltas import FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from lmstream.errors import ProviderError, StreamInterruptedError


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make_acc(structured: bool = False, clock: Clock | None = None) -> Accumulator[tuple[str, Any, str]]:
    blocks = itertools.count(1)
    return Accumulator(
        lambda value, type, level, meta: (type, value, meta["block"]),
        "INFO",
        lambda: {"block": f"b{next(blocks)}"},
        model="m",
        structured=structured,
        started_at=100.0,
        clock=clock or Clock(),
    )


def feed_all(acc: Accumulator[Any], deltas: list[Any]) -> list[tuple[str, Any, str]]:
    out: list[tuple[str, Any, str]] = []
    for d in deltas:
        out.extend(acc.feed(d))
    return out


def test_text_tokens_one_event_each_one_block():
    acc = make_acc()
    events = feed_all(acc, ["Hel", "", "lo", FinishDelta("stop")])
    assert events == [("response", "Hel", "b1"), ("response", "lo", "b1")]
    out = acc.finish()
    assert out.text == "Hello" and out.finish_reason == "stop" and out.model == "m"


def test_thinking_then_text_closes_the_thinking_block_first():
    acc = make_acc()
    events = feed_all(acc, [ThinkingDelta("hm"), ThinkingDelta(" ok", signature="sig"), "Answer", FinishDelta("stop")])
    assert events == [
        ("thinking_start", "", "b1"),
        ("thinking", "hm", "b1"),
        ("thinking", " ok", "b1"),
        ("thinking_end", "", "b1"),
        ("response", "Answer", "b2"),
    ]
    out = acc.finish()
    assert out.thinking == "hm ok"
    assert [(b.text, b.signature) for b in out.thinking_blocks] == [("hm ok", "sig")]


def test_thinking_end_flag_and_two_thinking_blocks_around_text():
    acc = make_acc()
    events = feed_all(
        acc, [ThinkingDelta("a"), ThinkingDelta(end=True), "x", ThinkingDelta("b"), "y", FinishDelta("stop")]
    )
    types = [(t, b) for t, _, b in events]
    assert types == [
        ("thinking_start", "b1"),
        ("thinking", "b1"),
        ("thinking_end", "b1"),
        ("response", "b2"),
        ("thinking_start", "b3"),
        ("thinking", "b3"),
        ("thinking_end", "b3"),
        ("response", "b4"),
    ]
    assert [b.text for b in acc.finish().thinking_blocks] == ["a", "b"]


def test_a_thinking_block_open_at_the_end_marker_is_closed():
    acc = make_acc()
    events = feed_all(acc, [ThinkingDelta("a"), FinishDelta("stop")])
    assert [t for t, _, _ in events] == ["thinking_start", "thinking", "thinking_end"]


def test_streamed_tool_call_start_deltas_then_complete_call_in_one_block():
    acc = make_acc()
    events = feed_all(
        acc,
        [
            ToolCallDelta(0, "call_1", "add"),
            ToolCallDelta(0, arguments='{"a": '),
            ToolCallDelta(0, arguments="1}"),
            FinishDelta("stop"),
        ],
    )
    assert events == [
        ("tool_call_start", {"id": "call_1", "name": "add"}, "b1"),
        ("tool_call_delta", '{"a": ', "b1"),
        ("tool_call_delta", "1}", "b1"),
        ("tool_call", {"id": "call_1", "name": "add", "arguments": {"a": 1}}, "b1"),
    ]
    out = acc.finish()
    assert out.finish_reason == "tool_calls"  # a stop with tool calls is a tool-call turn
    assert [(c.id, c.name, c.arguments) for c in out.tool_calls] == [("call_1", "add", {"a": 1})]


def test_fragments_before_the_name_are_flushed_with_the_start():
    acc = make_acc()
    events = feed_all(acc, [ToolCallDelta(3, arguments='{"q"'), ToolCallDelta(3, "c", "find", ': "x"}')])
    assert events == [
        ("tool_call_start", {"id": "c", "name": "find"}, "b1"),
        ("tool_call_delta", '{"q": "x"}', "b1"),
    ]


def test_two_interleaved_tool_calls_keep_their_own_blocks_and_index_order():
    acc = make_acc()
    events = feed_all(
        acc,
        [
            ToolCallDelta(1, "c2", "b"),
            ToolCallDelta(0, "c1", "a"),
            ToolCallDelta(1, arguments="{}"),
            ToolCallDelta(0, arguments='{"x": [1]}'),
            FinishDelta("tool_calls"),
        ],
    )
    blocks = {v["id"]: b for t, v, b in events if t == "tool_call_start"}
    assert blocks == {"c2": "b1", "c1": "b2"}
    deltas = [(v, b) for t, v, b in events if t == "tool_call_delta"]
    assert deltas == [("{}", "b1"), ('{"x": [1]}', "b2")]
    finals = [(v["id"], b) for t, v, b in events if t == "tool_call"]
    assert finals == [("c1", "b2"), ("c2", "b1")]  # completed in index order


def test_text_after_a_tool_call_is_a_new_text_block_and_thinking_closes_before_tools():
    acc = make_acc()
    events = feed_all(acc, ["a", ThinkingDelta("t"), ToolCallDelta(0, "c", "f", "{}"), "b", FinishDelta("stop")])
    assert [(t, b) for t, _, b in events] == [
        ("response", "b1"),
        ("thinking_start", "b2"),
        ("thinking", "b2"),
        ("thinking_end", "b2"),
        ("tool_call_start", "b3"),
        ("tool_call_delta", "b3"),
        ("response", "b4"),
        ("tool_call", "b3"),
    ]


def test_a_second_end_marker_does_not_repeat_tool_calls():
    acc = make_acc()
    events = feed_all(acc, [ToolCallDelta(0, "c", "f", "{}"), FinishDelta("tool_calls"), FinishDelta(None)])
    assert [t for t, _, _ in events].count("tool_call") == 1
    assert acc.finish().finish_reason == "tool_calls"


def test_a_nameless_tool_call_is_still_announced_before_it_completes():
    acc = make_acc()
    events = feed_all(acc, [ToolCallDelta(0, arguments="[1, 2]"), FinishDelta("stop")])
    assert [t for t, _, _ in events] == ["tool_call_start", "tool_call_delta", "tool_call"]
    assert events[-1][1] == {"id": "call_0", "name": "", "arguments": {"value": [1, 2]}}


def test_bad_tool_json_is_kept_raw():
    acc = make_acc()
    feed_all(acc, [ToolCallDelta(0, "c", "f", "{oops"), FinishDelta("stop")])
    assert acc.finish().tool_calls[0].arguments == {"_raw": "{oops"}


def test_usage_merges_fields_and_emits_nothing():
    acc = make_acc()
    assert (
        feed_all(acc, [UsageDelta(input_tokens=5), UsageDelta(output_tokens=7, cached_tokens=2), FinishDelta("stop")])
        == []
    )
    acc.feed(UsageDelta(reasoning_tokens=3))  # usage after the end marker (Chat Completions) still counts
    u = acc.finish().usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (5, 7, 2, 3)
    assert not acc.started  # usage alone is not content: a failure now may still be retried


def test_time_to_first_token_counts_a_tool_only_turn():
    clock = Clock()
    acc = make_acc(clock=clock)
    clock.t = 100.25
    acc.feed(ToolCallDelta(0, "c", "f"))
    clock.t = 101.0
    acc.feed(FinishDelta("stop"))
    out = acc.finish()
    assert acc.started and out.time_to_first_token == pytest.approx(0.25) and out.duration == pytest.approx(1.0)


def test_ttft_is_the_first_content_delta_not_usage():
    clock = Clock()
    acc = make_acc(clock=clock)
    clock.t = 100.1
    acc.feed(UsageDelta(input_tokens=1))
    clock.t = 100.5
    acc.feed("x")
    assert acc.ttft == pytest.approx(0.5) and acc.first_at == pytest.approx(100.5)


def test_no_end_marker_is_a_dropped_stream():
    acc = make_acc()
    feed_all(acc, ["partial"])
    with pytest.raises(ProviderError, match="end marker"):
        acc.finish()


def test_interrupted_carries_exactly_what_streamed():
    acc = make_acc()
    feed_all(acc, ["a", "b", ToolCallDelta(0, "c", "f", '{"k"')])
    err = acc.interrupted(ConnectionResetError("reset"))
    assert isinstance(err, StreamInterruptedError)
    assert err.partial_output.text == "ab" and err.partial_output.finish_reason == "error"
    assert "reset" in str(err)


def test_structured_output_emits_partial_objects_on_the_text_block():
    acc = make_acc(structured=True)
    events = feed_all(acc, ['{"city": "To', 'kyo", "n": 1', "}", FinishDelta("stop")])
    data = [(v, b) for t, v, b in events if t == "data"]
    assert data[-1] == ({"city": "Tokyo", "n": 1}, "b1")
    assert all(b == "b1" for _, b in data)
    assert acc.finish().text == '{"city": "Tokyo", "n": 1}'


def test_unknown_delta_is_a_type_error():
    with pytest.raises(TypeError, match="unknown delta"):
        make_acc().feed(object())  # type: ignore[arg-type]


def test_the_accumulator_module_imports_neither_events_nor_asyncio():
    import ast
    import inspect

    import lmstream.engine.accumulator as mod

    tree = ast.parse(inspect.getsource(mod))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    assert not any("events" in n or "asyncio" in n for n in names), names


def test_every_event_type_is_a_member_of_the_vocabulary():
    from lmstream.types import EventType

    acc = make_acc(structured=True)
    events = feed_all(
        acc,
        [
            ThinkingDelta("hm"),
            ThinkingDelta(end=True),
            '{"a": ',
            "1}",
            ToolCallDelta(0, "c1", "add", '{"x": 1}'),
            UsageDelta(input_tokens=3, output_tokens=4),
            FinishDelta("stop"),
        ],
    )
    kinds = [t for t, _, _ in events]
    assert set(kinds) == {"thinking_start", "thinking", "thinking_end", "response", "data", "tool_call_start"} | {
        "tool_call_delta",
        "tool_call",
    }
    assert all(type(t) is EventType for t in kinds), kinds  # never a retyped string


def test_no_module_compares_an_event_type_with_a_retyped_string():
    """`event.type == "response"` spelled with the string: use `EventType.RESPONSE`."""
    import ast
    from pathlib import Path

    import lmstream
    from lmstream.types import EventType

    names = {t.value for t in EventType}
    root = Path(lmstream.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in SCOPE_LEFT_TO_TRANSPORTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                typed = any(isinstance(s, ast.Attribute) and s.attr == "type" for s in sides)
                literal = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in names]
                if typed and literal:
                    found.append(f"{path.relative_to(root)}:{node.lineno} compares .type with {literal[0]!r}")
    assert not found, "\n".join(found)


#: packages whose event names are converted by their own engineers' work (issue 16)
SCOPE_LEFT_TO_TRANSPORTS: tuple[str, ...] = ()
