"""Hyperparameter checks: named checkers, the shared vocabulary, every provider's table."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from lmstream import ConfigurationError
from lmstream.invokers import PROVIDERS
from lmstream.invokers.params import (
    BOOL,
    COMMON_PARAMS,
    INT,
    NUMBER,
    STRING_OR_DICT,
    Check,
    int_at_least,
    number_between,
    one_of,
)


@pytest.mark.parametrize(
    ("check", "good", "bad", "expected"),
    [
        (INT, [0, -3, 10**12], [True, 1.0, "1", None], "an int"),
        (NUMBER, [0, 0.5, -2], [False, "1", None], "a number"),
        (BOOL, [True, False], [0, 1, "true"], "a bool"),
        (STRING_OR_DICT, ["auto", {"type": "x"}], [1, ["a"]], "a string or a dict"),
        (int_at_least(1), [1, 99], [0, -1, 1.5, True], "a positive int"),
        (int_at_least(0), [0, 5], [-1], "an int >= 0"),
        (number_between(0, 2), [0, 1.5, 2], [-0.1, 2.01, "1", True], "a number between 0 and 2"),
        (one_of("low", "high"), ["low", "high"], ["medium", ["low"], {"low": 1}, 1], "low/high"),
        (one_of(1, expected="1 (one choice)"), [1], [2, "1"], "1 (one choice)"),
    ],
)
def test_named_checks(check: Check, good: list[Any], bad: list[Any], expected: str) -> None:
    assert check.expected == expected
    assert all(check(v) for v in good)
    assert not any(check(v) for v in bad)
    test, phrase = check  # a table entry still unpacks as (test, expected)
    assert test is check.test and phrase == expected


def test_common_vocabulary() -> None:
    assert set(COMMON_PARAMS) == {"max_tokens", "temperature", "top_p", "stop", "seed"}
    stop = COMMON_PARAMS["stop"]
    assert stop("END") and stop(["a", "b"]) and stop(("a",)) and not stop(["a", 1]) and not stop(5)


@pytest.mark.parametrize("cls_name", sorted(set(PROVIDERS.values())))
def test_every_provider_table_is_named_checks(cls_name: str) -> None:
    cls = getattr(importlib.import_module("lmstream.invokers"), cls_name)
    assert cls.extra_params, cls_name
    for name, check in cls.extra_params.items():
        assert isinstance(check, Check) and check.expected, (cls_name, name)
    assert not set(cls.extra_params) & set(COMMON_PARAMS)


def test_invoker_errors_name_the_expectation() -> None:
    from lmstream.invokers.openai_chat import OpenAICompatibleLMInvoker

    inv = OpenAICompatibleLMInvoker("m", base_url="http://127.0.0.1:9/v1")
    assert inv.validate_hyperparameters({"top_k": 3, "temperature": None}) == {"top_k": 3}
    with pytest.raises(ConfigurationError, match=r"'n' must be 1 \(one choice is streamed\), got int 2"):
        inv.validate_hyperparameters({"n": 2})
    with pytest.raises(ConfigurationError, match=r"unknown hyperparameter 'topk'.*top_k"):
        inv.validate_hyperparameters({"topk": 3})


def test_invoker_options_match_the_base_constructor() -> None:
    """InvokerOptions types the keywords every provider forwards to BaseLMInvoker: no drift."""
    import inspect

    from lmstream.invokers.base import BaseLMInvoker
    from lmstream.invokers.options import InvokerOptions

    base = set(inspect.signature(BaseLMInvoker.__init__).parameters) - {"self", "model_name"}
    assert set(InvokerOptions.__annotations__) == base
    assert not InvokerOptions.__required_keys__


@pytest.mark.parametrize("cls_name", sorted(set(PROVIDERS.values()) - {"LocalLMInvoker"}))
def test_every_cloud_invoker_takes_the_shared_keywords(cls_name: str) -> None:
    from lmstream import RetryConfig

    cls = getattr(importlib.import_module("lmstream.invokers"), cls_name)
    retry = RetryConfig(max_retries=1)
    model = "langchain_openai:ChatOpenAI" if cls_name == "LangChainLMInvoker" else "m"  # a model class to build
    inv = cls(
        model_name=model,
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        default_hyperparameters={"temperature": 0.5},
        retry_config=retry,
        tools=[{"name": "lookup"}],
        response_schema={"type": "object", "properties": {}},
    )
    assert inv.model_name == model and inv.base_url == "http://127.0.0.1:9/v1"
    assert inv.default_hyperparameters == {"temperature": 0.5} and inv.retry_config is retry
    assert [t.name for t in inv.tools] == ["lookup"] and inv.response_schema is not None
    assert "sk-test" not in repr(inv)
    with pytest.raises(TypeError, match="api_kye"):
        cls(model, api_key="sk-test", base_url="http://127.0.0.1:9/v1", api_kye="sk-test")
