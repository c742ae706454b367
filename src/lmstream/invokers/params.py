"""Hyperparameter checks: the shared vocabulary and named checkers for provider extras.

Every invoker validates hyperparameters against `COMMON_PARAMS` plus its own
`extra_params` table, so an unknown or ill-typed value is a clear error naming what was
expected instead of a silent drop or a provider-side 400. A `Check` is a named predicate
with the phrase the error message uses; build provider tables from the helpers below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "BOOL",
    "COMMON_PARAMS",
    "DICT",
    "INT",
    "NUMBER",
    "STRING",
    "STRING_OR_DICT",
    "Check",
    "ParamTable",
    "int_at_least",
    "is_int",
    "is_num",
    "number_between",
    "one_of",
]


def is_int(v: Any) -> bool:
    """An int that is not a bool (JSON and most providers tell them apart)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    """An int or a float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Check(NamedTuple):
    """One hyperparameter's check: `test(value)` and what the error says it `expected`.

    A tuple so that `test, expected = check` works wherever a table is read.
    """

    test: Callable[[Any], bool]
    expected: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)


#: name -> check; the shape of `COMMON_PARAMS` and of every invoker's `extra_params`
ParamTable = Mapping[str, Check]


def _of_type(*types: type, expected: str) -> Check:
    return Check(lambda v: isinstance(v, types), expected)


INT = Check(is_int, "an int")
NUMBER = Check(is_num, "a number")
STRING = _of_type(str, expected="a string")
BOOL = _of_type(bool, expected="a bool")
DICT = _of_type(dict, expected="a dict")
STRING_OR_DICT = _of_type(str, dict, expected="a string or a dict")


def int_at_least(low: int) -> Check:
    """An int >= `low`."""
    return Check(lambda v: is_int(v) and v >= low, f"an int >= {low}" if low != 1 else "a positive int")


def number_between(low: float, high: float) -> Check:
    """A number in the closed range [low, high]."""
    return Check(lambda v: is_num(v) and low <= v <= high, f"a number between {low:g} and {high:g}")


def one_of(*values: Any, expected: str | None = None) -> Check:
    """Exactly one of `values` (compared with ==)."""
    allowed = frozenset(values)
    return Check(lambda v: isinstance(v, type(values[0])) and v in allowed, expected or "/".join(map(str, values)))


def _is_stop(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v))


#: the vocabulary every provider accepts (each invoker translates the names for its API)
COMMON_PARAMS: dict[str, Check] = {
    "max_tokens": int_at_least(1),
    "temperature": number_between(0, 2),
    "top_p": number_between(0, 1),
    "stop": Check(_is_stop, "a string or a list of strings"),
    "seed": INT,
}
