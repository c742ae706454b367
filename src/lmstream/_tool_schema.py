"""JSON schemas for a tool's parameters, read from its signature and docstring.

Pure: no I/O and no events; `tools` builds a `Tool` from what this returns.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import re
import types
from typing import Any, Literal, Union, get_args, get_origin

__all__ = ["parse_docstring", "param_schema"]


_ARG_LINE = re.compile(r"^\s*(?::param\s+)?\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Description (text before Args:) and per-parameter help (Google or Sphinx style)."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    desc_lines: list[str] = []
    params: dict[str, str] = {}
    in_args = False
    in_other = False  # inside Returns:/Raises:/...: not part of the description
    last: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.lower() in ("args:", "arguments:", "parameters:", "params:"):
            in_args, in_other = True, False
            continue
        if stripped.lower() in ("returns:", "return:", "raises:", "yields:", "example:", "examples:"):
            in_args, in_other = False, True
            last = None
            continue
        if in_other:
            continue
        if stripped.startswith(":param"):
            m = _ARG_LINE.match(stripped)
            if m:
                params[m.group(1)] = m.group(2).strip()
            continue
        if stripped.startswith(":return") or stripped.startswith(":raises"):
            continue
        if in_args:
            m = _ARG_LINE.match(line)
            if m and line.startswith((" ", "\t")) and (len(line) - len(line.lstrip())) <= 8:
                last = m.group(1)
                params[last] = m.group(2).strip()
            elif last and stripped:
                params[last] += " " + stripped
            continue
        desc_lines.append(line)
    return "\n".join(desc_lines).strip(), params


_ARRAY_ORIGINS: tuple[type, ...] = (
    list,
    set,
    frozenset,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
)
_OBJECT_ORIGINS: tuple[type, ...] = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _array(origin: Any, args: tuple[Any, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length of X
            schema["items"] = param_schema(args[0])
        else:  # tuple[X, Y]: fixed length, one schema per position
            schema["prefixItems"] = [param_schema(a) for a in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        return schema
    if args:
        schema["items"] = param_schema(args[0])
    if isinstance(origin, type) and issubclass(origin, collections.abc.Set):
        schema["uniqueItems"] = True
    return schema


def param_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of a parameter annotation ({} when it says nothing usable)."""
    if tp is inspect.Parameter.empty or tp is Any:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return param_schema(args[0]) if len(args) == 1 else {"anyOf": [param_schema(a) for a in args]}
    if origin is Literal:
        values: list[Any] = list(get_args(tp))
        return {"enum": values}
    if origin is tuple or origin in _ARRAY_ORIGINS:
        return _array(origin, get_args(tp))
    if origin in _OBJECT_ORIGINS:
        kv = get_args(tp)
        obj: dict[str, Any] = {"type": "object"}
        if len(kv) == 2 and kv[1] is not Any:
            obj["additionalProperties"] = param_schema(kv[1])
        return obj
    if isinstance(tp, type):
        if issubclass(tp, bool):
            return {"type": "boolean"}
        if issubclass(tp, int):
            return {"type": "integer"}
        if issubclass(tp, float):
            return {"type": "number"}
        if issubclass(tp, str):
            return {"type": "string"}
        if issubclass(tp, enum.Enum):
            return {"enum": [m.value for m in tp]}
        if hasattr(tp, "model_json_schema"):  # pydantic (before the ABCs: a model is iterable)
            return dict(tp.model_json_schema())
        if issubclass(tp, _OBJECT_ORIGINS):
            return {"type": "object"}
        if issubclass(tp, tuple) or (issubclass(tp, _ARRAY_ORIGINS) and not issubclass(tp, (bytes, bytearray))):
            return _array(tp, ())
    return {}
