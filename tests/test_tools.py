"""lmstream.tools: JSON schemas from signatures and docstrings, name checks, execution."""

from __future__ import annotations

import asyncio
import collections.abc
import enum
import threading
import typing
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from lmstream import ConfigurationError, Tool, ToolCall, tool
from lmstream.tools import execute_tool_calls, to_tool


def props(t: Tool) -> dict[str, Any]:
    return dict(t.parameters["properties"])


# --------------------------------------------------------------------------- schemas


class Unit(enum.Enum):
    C = "c"
    F = "f"


class Place(BaseModel):
    city: str


def test_scalar_enum_literal_and_optional_parameters() -> None:
    def f(
        a: int,
        b: float,
        c: str,
        d: bool,
        e: Unit,
        g: Literal["x", "y"],
        h: int | None = None,
        i: typing.Optional[str] = None,  # noqa: UP045 - the spelling under test
        j: Any = 3,
        k=None,  # unannotated on purpose
    ) -> None:
        pass

    p = props(to_tool(f))
    assert p["a"] == {"type": "integer"} and p["b"] == {"type": "number"}
    assert p["c"] == {"type": "string"} and p["d"] == {"type": "boolean"}
    assert p["e"] == {"enum": ["c", "f"]} and p["g"] == {"enum": ["x", "y"]}
    assert p["h"] == {"type": "integer"} and p["i"] == {"type": "string"}
    assert p["j"] == {"default": 3} and p["k"] == {}
    assert to_tool(f).parameters["required"] == ["a", "b", "c", "d", "e", "g"]


@pytest.mark.parametrize(
    "annotation",
    [
        list[str],
        typing.List[str],  # noqa: UP006
        typing.Sequence[str],
        typing.Iterable[str],
        collections.abc.Sequence[str],
        collections.abc.Iterable[str],
        collections.abc.Collection[str],
        collections.abc.MutableSequence[str],
        tuple[str, ...],
    ],
)
def test_sequences_of_strings_are_arrays_of_strings(annotation: Any) -> None:
    def f(names):  # type: ignore[no-untyped-def]
        pass

    f.__annotations__ = {"names": annotation}
    assert props(to_tool(f))["names"] == {"type": "array", "items": {"type": "string"}}


@pytest.mark.parametrize(
    "annotation",
    [set[int], frozenset[int], collections.abc.Set[int], typing.AbstractSet[int], typing.Set[int]],  # noqa: UP006
)
def test_sets_are_arrays_of_unique_items(annotation: Any) -> None:
    def f(ids):  # type: ignore[no-untyped-def]
        pass

    f.__annotations__ = {"ids": annotation}
    assert props(to_tool(f))["ids"] == {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}


def test_tuples_mappings_and_models() -> None:
    def f(
        point: tuple[float, float],
        bare: tuple,  # type: ignore[type-arg]
        scores: dict[str, int],
        meta: collections.abc.Mapping[str, Any],
        raw: dict,  # type: ignore[type-arg]
        place: Place,
        tags: list[Literal["a", "b"]] | None = None,
    ) -> None:
        pass

    p = props(to_tool(f))
    assert p["point"] == {
        "type": "array",
        "prefixItems": [{"type": "number"}, {"type": "number"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert p["bare"] == {"type": "array"}
    assert p["scores"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert p["meta"] == {"type": "object"} and p["raw"] == {"type": "object"}
    assert p["place"]["properties"]["city"]["type"] == "string"
    assert p["tags"] == {"type": "array", "items": {"enum": ["a", "b"]}}


def test_docstring_gives_description_and_parameter_help() -> None:
    def google(city: str, unit: str = "c") -> str:
        """Current weather for a city.

        Longer explanation.

        Args:
            city: the city name,
                continued on the next line
            unit (str): c or f

        Returns:
            the weather
        """
        return city

    def sphinx(city: str) -> str:
        """Weather.

        :param city: the city name
        :return: the weather
        """
        return city

    g = to_tool(google)
    assert g.name == "google" and g.description == "Current weather for a city.\n\nLonger explanation."
    assert props(g)["city"]["description"] == "the city name, continued on the next line"
    assert props(g)["unit"] == {"type": "string", "description": "c or f", "default": "c"}
    assert g.parameters["required"] == ["city"]
    s = to_tool(sphinx)
    assert s.description == "Weather." and props(s)["city"]["description"] == "the city name"


def test_var_args_are_not_parameters() -> None:
    def f(a: int, *rest: int, **extra: Any) -> None:
        pass

    assert list(props(to_tool(f))) == ["a"]


# --------------------------------------------------------------------------- names and forms


@pytest.mark.parametrize("bad", ["not a valid name!", "x" * 65, "naïve", "a.b"])
def test_invalid_names_are_rejected_on_every_path(bad: str) -> None:
    def f() -> None:
        pass

    with pytest.raises(ConfigurationError, match="must be 1-64 letters"):
        tool(name=bad)(f)
    with pytest.raises(ConfigurationError, match="must be 1-64 letters"):
        tool(name=bad)(Tool("ok"))
    with pytest.raises(ConfigurationError, match="must be 1-64 letters"):
        to_tool({"name": bad})
    with pytest.raises(ConfigurationError, match="must be 1-64 letters"):
        Tool(bad)


def test_decorator_overrides_name_and_description() -> None:
    @tool
    def plain(x: int) -> int:
        """Doubles."""
        return 2 * x

    @tool(name="renamed-tool_1", description="Says hi.")
    def other() -> str:
        return "hi"

    assert isinstance(plain, Tool) and plain.name == "plain" and plain.description == "Doubles."
    assert other.name == "renamed-tool_1" and other.description == "Says hi."
    # a lambda has no valid name of its own; the override gives it one
    assert tool(name="echo")(lambda x: x).name == "echo"
    assert tool(name="again")(plain).parameters == plain.parameters


def test_dict_and_tool_forms() -> None:
    t = Tool("lookup", "Looks up.", {"type": "object", "properties": {"q": {"type": "string"}}})
    assert to_tool(t) is t
    d = to_tool({"name": "lookup", "description": "Looks up."})
    assert d.parameters == {"type": "object", "properties": {}} and d.func is None
    with pytest.raises(ConfigurationError, match="must be 1-64 letters"):
        Tool("")
    with pytest.raises(ConfigurationError, match="needs at least a 'name'"):
        to_tool({"description": "nameless"})
    with pytest.raises(ConfigurationError, match="type 'object'"):
        Tool("x", parameters={"type": "array"})
    with pytest.raises(ConfigurationError, match="cannot make a tool from int"):
        to_tool(3)


# --------------------------------------------------------------------------- execution


async def test_sync_tools_run_off_the_loop_and_async_tools_on_it() -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    def sync_tool(x: int) -> dict[str, int]:
        seen["sync"] = threading.get_ident()
        return {"double": 2 * x}

    async def async_tool(name: str) -> str:
        seen["async"] = threading.get_ident()
        await asyncio.sleep(0)
        return f"hello {name}"

    results = await execute_tool_calls(
        [to_tool(sync_tool), to_tool(async_tool)],
        [ToolCall("c1", "sync_tool", {"x": 4}), ToolCall("c2", "async_tool", {"name": "Ada"})],
    )
    assert [(r.id, r.name, r.output, r.is_error) for r in results] == [
        ("c1", "sync_tool", '{"double":8}', False),
        ("c2", "async_tool", "hello Ada", False),
    ]
    assert seen["sync"] != loop_thread and seen["async"] == loop_thread


async def test_tool_calls_run_concurrently() -> None:
    started = 0
    both = asyncio.Event()

    async def wait_for_peer() -> str:
        nonlocal started
        started += 1
        if started == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 2)
        return "ok"

    t = to_tool(wait_for_peer)
    results = await execute_tool_calls([t], [ToolCall("a", "wait_for_peer", {}), ToolCall("b", "wait_for_peer", {})])
    assert [r.output for r in results] == ["ok", "ok"]


async def test_failures_become_error_results_for_the_model() -> None:
    def broken(city: str) -> str:
        raise RuntimeError("weather service down")

    class Reply(BaseModel):
        text: str

    def model_result() -> Reply:
        return Reply(text="fine")

    tools = [to_tool(broken), to_tool(model_result), Tool("schema_only")]
    results = await execute_tool_calls(
        tools,
        [
            ToolCall("1", "broken", {"city": "Paris"}),
            ToolCall("2", "missing", {}),
            ToolCall("3", "broken", {"_raw": "{not json"}),
            ToolCall("4", "broken", {"town": "Paris"}),
            ToolCall("5", "model_result", {}),
            ToolCall("6", "schema_only", {}),
        ],
    )
    out = {r.id: r for r in results}
    assert out["1"].is_error and out["1"].output == "Error: RuntimeError: weather service down"
    assert out["2"].is_error and "no tool named 'missing'" in out["2"].output and "broken" in out["2"].output
    assert out["3"].is_error and "not valid JSON: {not json" in out["3"].output
    assert out["4"].is_error and out["4"].output.startswith("Error: TypeError:")
    assert not out["5"].is_error and out["5"].output == '{"text":"fine"}'
    assert out["6"].is_error and "has no function to execute" in out["6"].output


async def test_cancelling_the_loop_cancels_running_tools() -> None:
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    task = asyncio.create_task(execute_tool_calls([to_tool(slow)], [ToolCall("1", "slow", {})]))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
