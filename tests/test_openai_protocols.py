"""The OpenAI mappers without HTTP: request bodies -> processor arguments, events -> chunks and
Responses events. The rules a client relies on: truthful finish reasons, `[DONE]` only after a
real finish, an error chunk the SDKs raise, server-side tools never shown as the client's."""

from __future__ import annotations

import pytest

from lmstream.events import EventType
from lmstream.prompt import Message
from lmstream.protocols.openai_chat import (
    ChatCompletionChunks,
    ChatCompletionResult,
    OpenAIError,
    parse_chat_completion,
    prompt_arguments,
    tool_settings,
)
from lmstream.protocols.openai_responses import ResponsesEvents, parse_responses
from lmstream.types import ToolCall, ToolResult

DONE_META = {"finish_reason": "stop", "usage": {"input_tokens": 3, "output_tokens": 2, "cost": 0.0}}


def body(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_parse_maps_sampling_names_and_formats():
    req = parse_chat_completion(
        body(max_completion_tokens=9, temperature=0.5, stop="x", response_format={"type": "json_object"})
    )
    assert req.sampling == {"max_tokens": 9, "temperature": 0.5, "stop": "x"}
    assert req.response_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = parse_chat_completion(
        body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    )
    assert req.response_schema == schema


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "tool_call_id": "c9", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"extra_body_field": 1}, "extra_body_field"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]},
         "messages[0].content[0].image_url.url"),
    ],
)  # fmt: skip
def test_parse_errors_name_the_field(extra, param):
    with pytest.raises(OpenAIError) as e:
        parse_chat_completion(body(**extra))
    assert e.value.param == param and e.value.status == 400


def test_a_tool_round_trip_becomes_lmstream_messages():
    req = parse_chat_completion(
        body(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ]
        )
    )
    assert [m.role for m in req.messages] == ["user", "assistant", "tool"]
    assert req.messages[1].contents == [ToolCall("c1", "w", {"a": 1})]
    assert req.messages[2].contents[0] == ToolResult("c1", "w", "sunny")
    args = prompt_arguments(None, req.messages)
    assert args["history"] == req.messages and args["extra_contents"] is None
    with pytest.raises(OpenAIError):  # a template key needs the user's message last
        prompt_arguments("question", req.messages)
    assert prompt_arguments("q", [Message.user("hi")])["prompt_kwargs"] == {"q": "hi"}


def test_client_tools_need_the_flag_and_tool_choice_a_model_that_takes_it():
    tools = [{"name": "w", "description": "", "parameters": {"type": "object"}}]
    with pytest.raises(OpenAIError, match="--allow-client-tools"):
        tool_settings(tools, None, False, frozenset())
    assert tool_settings(tools, "none", True, frozenset()) == ([], {})
    assert tool_settings(tools, "required", True, frozenset({"tool_choice"})) == (tools, {"tool_choice": "required"})
    with pytest.raises(OpenAIError):
        tool_settings(tools, "required", True, frozenset())


def test_chunks_stream_text_then_a_truthful_finish_with_usage():
    m = ChatCompletionChunks("m", include_usage=True)
    first = m.start()
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""} and first["usage"] is None
    assert m.feed(EventType.RESPONSE, "Hi", {})[0]["choices"][0]["delta"] == {"content": "Hi"}
    assert m.feed(EventType.THINKING, "hm", {})[0]["choices"][0]["delta"] == {"reasoning_content": "hm"}
    end = m.feed(EventType.DONE, "", {**DONE_META, "finish_reason": "length"})
    assert end[0]["choices"][0]["finish_reason"] == "length"
    assert end[1]["choices"] == [] and end[1]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }
    assert end[1]["lmstream"]["cost"] == 0.0
    assert m.finished and m.closed and m.feed(EventType.RESPONSE, "late", {}) == []


def test_an_unknown_finish_reason_is_never_reported_as_stop():
    m = ChatCompletionChunks("m")
    (end,) = m.feed(EventType.DONE, "", {**DONE_META, "finish_reason": "recitation"})
    assert end["choices"][0]["finish_reason"] == "recitation"


def test_a_failure_is_an_error_chunk_and_no_finish():
    m = ChatCompletionChunks("m")
    m.feed(EventType.RESPONSE, "partial", {})
    (chunk,) = m.feed(EventType.ERROR, "upstream said sk-secret at http://10.0.0.1", {"error_type": "ProviderError"})
    assert set(chunk) == {"error"}
    assert chunk["error"]["code"] == "upstream_error" and "sk-secret" not in chunk["error"]["message"]
    assert "10.0.0.1" not in chunk["error"]["message"]
    assert m.closed and not m.finished  # so no [DONE]


def test_tool_calls_go_out_only_for_client_tools():
    start = {"id": "c1", "name": "w"}
    for client_tools in (True, False):
        m = ChatCompletionChunks("m", client_tools=client_tools)
        out = m.feed(EventType.TOOL_CALL_START, start, {"block_id": 1})
        out += m.feed(EventType.TOOL_CALL_DELTA, '{"a"', {"block_id": 1})
        out += m.feed(EventType.TOOL_CALL_DELTA, ":1}", {"block_id": 1})
        out += m.feed(EventType.TOOL_CALL, {**start, "arguments": {"a": 1}}, {"block_id": 1})
        if not client_tools:
            assert out == []  # the server runs its own tools
            continue
        calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in out]
        assert calls[0] == {"index": 0, "id": "c1", "type": "function", "function": {"name": "w", "arguments": ""}}
        assert "".join(c["function"]["arguments"] for c in calls) == '{"a":1}'


def test_non_streaming_result_folds_events():
    r = ChatCompletionResult("m", client_tools=True)
    r.feed(EventType.RESPONSE, "a", {})
    r.feed(EventType.RESPONSE, "b", {})
    r.feed(EventType.TOOL_CALL, {"id": "c1", "name": "w", "arguments": {"x": 1}}, {})
    r.feed(EventType.DONE, "", {**DONE_META, "finish_reason": "tool_calls"})
    out = r.body()
    assert out["choices"][0]["message"]["content"] == "ab"
    assert out["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "w", "arguments": '{"x": 1}'}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["total_tokens"] == 5


def test_responses_events_in_order_with_a_length_stop_as_incomplete():
    req = parse_responses({"model": "m", "input": "hi", "max_output_tokens": 5})
    assert req.sampling == {"max_tokens": 5}
    m = ResponsesEvents("m", request=req)
    events = m.start() + m.feed(EventType.RESPONSE, "He", {}) + m.feed(EventType.RESPONSE, "y", {})
    events += m.feed(EventType.DONE, "", {**DONE_META, "finish_reason": "length"})
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["content"][0]["text"] == "Hey"


def test_responses_failure_sends_failed_then_an_error_the_sdk_raises():
    m = ResponsesEvents("m")
    m.start()
    failed, error = m.feed(EventType.ERROR, "x", {"error_type": "ProviderError"})
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert error["type"] == "error" and error["error"]["code"] == "upstream_error"
    assert not m.finished


def test_responses_refuses_stored_state():
    with pytest.raises(OpenAIError) as e:
        parse_responses({"model": "m", "input": "hi", "previous_response_id": "resp_1"})
    assert e.value.param == "previous_response_id"


def test_responses_reasoning_then_text_are_two_items_and_a_whole_tool_call_is_one():
    m = ResponsesEvents("m", client_tools=True)
    events = m.start() + m.feed(EventType.THINKING, "let me", {}) + m.feed(EventType.RESPONSE, "ok", {})
    events += m.feed(EventType.TOOL_CALL, {"id": "c1", "name": "w", "arguments": {"a": 1}}, {"block_id": 7})
    events += m.feed(EventType.DONE, "", {**DONE_META, "finish_reason": "tool_calls"})
    kinds = [e["type"] for e in events]
    assert "response.reasoning_text.delta" in kinds
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    args = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert args[0]["arguments"] == '{"a": 1}' and args[0]["name"] == "w"
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["reasoning", "message", "function_call"]
    assert all(o["status"] == "completed" for o in output)
    assert events[-1]["type"] == "response.completed"
