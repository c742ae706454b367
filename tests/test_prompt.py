"""PromptBuilder and Message: keys, escapes, verbatim values, history order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstream import Message, PromptBuilder, PromptError, ToolCall, ToolResult


def texts(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in messages]


def test_system_and_user_templates():
    pb = PromptBuilder(system_template="You are a {role}.", user_template="{question}")
    msgs = pb.format(role="guide", question="Where?")
    assert texts(msgs) == [("system", "You are a guide."), ("user", "Where?")]
    assert all(isinstance(m, Message) for m in msgs)
    assert msgs[1].contents == ["Where?"]


def test_missing_and_unknown_keys_named_in_one_error():
    pb = PromptBuilder(system_template="{a} {b}", user_template="{c}")
    with pytest.raises(PromptError) as info:
        pb.format(a=1, zzz=2, yyy=3)
    err = info.value
    assert err.missing == ["b", "c"]
    assert err.unknown == ["yyy", "zzz"]
    for key in ("b", "c", "yyy", "zzz"):
        assert key in str(err)
    assert "'a'" not in str(err)


def test_only_missing_or_only_unknown():
    pb = PromptBuilder(user_template="{q}")
    with pytest.raises(PromptError) as info:
        pb.format()
    assert info.value.missing == ["q"] and info.value.unknown == []
    with pytest.raises(PromptError) as info:
        pb.format(q="x", extra="y")
    assert info.value.missing == [] and info.value.unknown == ["extra"]


def test_key_defaults_fill_and_are_overridden():
    pb = PromptBuilder(system_template="Tone: {tone}", user_template="{q}", key_defaults={"tone": "calm"})
    assert texts(pb.format(q="hi")) == [("system", "Tone: calm"), ("user", "hi")]
    assert texts(pb.format(q="hi", tone="loud"))[0] == ("system", "Tone: loud")
    with pytest.raises(PromptError) as info:
        PromptBuilder(user_template="{q}", key_defaults={"nope": 1})
    assert info.value.unknown == ["nope"]


def test_ignore_extra_keys():
    pb = PromptBuilder(user_template="{q}", ignore_extra_keys=True)
    assert texts(pb.format(q="hi", extra="ignored")) == [("user", "hi")]
    with pytest.raises(PromptError) as info:
        pb.format(extra="still missing q")
    assert info.value.missing == ["q"] and info.value.unknown == []


def test_braces_in_values_are_verbatim():
    pb = PromptBuilder(system_template="S {x}", user_template="U {x} {y}")
    value = "{not_a_key} {{x}} {0} {x!r:>5} }{"
    msgs = pb.format(x=value, y="{y}")
    assert texts(msgs) == [("system", "S " + value), ("user", f"U {value} {{y}}")]


def test_non_string_values_are_stringified():
    pb = PromptBuilder(user_template="{n} {f} {d}")
    assert pb.format(n=3, f=1.5, d={"a": 1}).pop().text == "3 1.5 {'a': 1}"


def test_escaped_braces_in_templates():
    pb = PromptBuilder(system_template='JSON like {{"k": 1}}', user_template="{{literal}} {q} }}{{")
    msgs = pb.format(q="v")
    assert texts(msgs) == [("system", 'JSON like {"k": 1}'), ("user", "{literal} v }{")]
    assert pb.prompt_keys == ["q"]


@pytest.mark.parametrize("template", ["{unclosed", "stray } brace", "{a.b}", "{0}", "{x!r}", "{x:>5}", "{}"])
def test_malformed_templates_are_prompt_errors(template):
    with pytest.raises(PromptError, match="template"):
        PromptBuilder(user_template=template)


def test_history_forms_are_ordered_system_history_user():
    pb = PromptBuilder(system_template="sys", user_template="{q}")
    history = [
        Message.user("first question"),
        {"role": "assistant", "content": "first answer"},
        ("user", "second question"),
        {"role": "assistant", "contents": ["second ", "answer"]},
    ]
    msgs = pb.format(history=history, q="third question")
    assert texts(msgs) == [
        ("system", "sys"),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
        ("assistant", "second answer"),
        ("user", "third question"),
    ]


def test_history_rejects_bad_items_and_roles():
    pb = PromptBuilder(user_template="{q}")
    with pytest.raises(PromptError, match="history"):
        pb.format(history=["just a string"], q="x")
    with pytest.raises(PromptError, match="role"):
        pb.format(history=[("wizard", "x")], q="x")


def test_extra_contents_are_appended_to_the_user_message():
    pb = PromptBuilder(user_template="{q}")
    msgs = pb.format(q="look", extra_contents=["more text", " and more"])
    assert len(msgs) == 1
    assert msgs[0].role == "user" and msgs[0].contents == ["look", "more text", " and more"]
    only_extra = PromptBuilder().format(extra_contents=["alone"])
    assert texts(only_extra) == [("user", "alone")]
    assert PromptBuilder().format() == []


def test_message_shortcuts():
    assert Message.system("s") == Message("system", ["s"])
    assert Message.user("u").contents == ["u"] and Message.user("u").role == "user"
    call = ToolCall("c1", "f", {"x": 1})
    a = Message.assistant("thinking aloud", tool_calls=[call])
    assert a.role == "assistant" and a.contents == ["thinking aloud", call]
    assert a.text == "thinking aloud" and a.tool_calls == [call]
    assert Message.assistant(tool_calls=[call]).contents == [call]
    result = ToolResult("c1", "f", "42")
    t = Message.tool(result)
    assert t.role == "tool" and t.tool_results == [result] and t.text == ""
    assert Message("user", "plain").contents == ["plain"]
    with pytest.raises(PromptError):
        Message("robot", ["x"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties


@given(st.text())
def test_any_value_is_inserted_verbatim(value):
    pb = PromptBuilder(system_template="A{x}B", user_template="{x}")
    msgs = pb.format(x=value)
    assert msgs[0].text == "A" + value + "B"
    assert msgs[1].text == value


@given(st.text())
def test_escaped_literal_text_round_trips(text):
    escaped = text.replace("{", "{{").replace("}", "}}")
    pb = PromptBuilder(system_template=escaped, user_template=escaped + "{v}")
    msgs = pb.format(v="!")
    if text:
        assert msgs[0].text == text
    assert msgs[-1].text == text + "!"
    assert pb.prompt_keys == ["v"]


@given(st.lists(st.text(alphabet="{}ab", max_size=6), min_size=1, max_size=4))
def test_several_brace_heavy_values_stay_verbatim(values):
    template = "|".join(f"{{k{i}}}" for i in range(len(values)))
    pb = PromptBuilder(user_template=template)
    msg = pb.format(**{f"k{i}": v for i, v in enumerate(values)})[0]
    assert msg.text == "|".join(values)


async def test_a_positional_value_or_a_model_setting_as_a_template_key_says_what_to_write() -> None:
    """Users wrote `process("Hi")` (a raw ValueError) and `stream(question=..., max_tokens=128)` (an
    "unknown key" with no word of `hyperparameters=`): each error shows the call that works."""
    from lmstream import LMRequestProcessor
    from lmstream.invokers.params import COMMON_PARAMS
    from lmstream.testing import ScriptedLMInvoker
    from lmstream.types import HYPERPARAMETER_NAMES

    assert set(HYPERPARAMETER_NAMES) == set(COMMON_PARAMS)
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{question}"), ScriptedLMInvoker([["hi"]]))
    with pytest.raises(PromptError) as positional:
        await lmrp.process("Hi")  # type: ignore[arg-type]
    assert "process(question='Hi')" in str(positional.value)
    with pytest.raises(PromptError) as setting:
        await lmrp.process(question="Hi", max_tokens=128, temperature=0)
    message = str(setting.value)
    assert "unknown key max_tokens, temperature" in message
    assert "pass hyperparameters={'max_tokens': ..., 'temperature': ...}" in message
