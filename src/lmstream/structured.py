"""Structured output: response schemas, validation and an incremental partial-JSON parser.

The parser consumes each text delta once (O(n) over the whole stream) and keeps the object
tree built so far, so a UI can render fields as they arrive without re-parsing the prefix.
"""

from __future__ import annotations

import copy
import json as _std_json
from typing import Any

from . import _json
from .errors import ConfigurationError, OutputParserError, OutputTruncatedError

__all__ = ["schema_of", "validate_structured", "PartialJSONParser", "extract_json"]


def schema_of(schema: Any) -> tuple[dict[str, Any], Any]:
    """Return (JSON schema, pydantic model or None) for a pydantic model class or a dict."""
    if isinstance(schema, dict):
        if schema.get("type") not in ("object", "array") and "properties" not in schema:
            raise ConfigurationError("response_schema must be a JSON schema of type 'object' (or a pydantic model)")
        return schema, None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return dict(schema.model_json_schema()), schema
    raise ConfigurationError(
        f"response_schema must be a pydantic model class or a JSON schema dict, got {type(schema).__name__}"
    )


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def _check(value: Any, schema: dict[str, Any], path: str, defs: dict[str, Any]) -> None:
    """A small JSON-schema subset: $ref, type, enum, required, properties, items, anyOf."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        schema = defs.get(ref, {})
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                _check(value, sub, path, defs)
                return
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{path}: matches none of anyOf ({'; '.join(errors)})")
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        ok = False
        for name in types:
            py = _TYPES.get(name)
            if py is None:
                ok = True
            elif isinstance(value, py) and not (name in ("integer", "number") and isinstance(value, bool)):
                ok = True
        if not ok:
            raise ValueError(f"{path}: expected {t}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise ValueError(f"{path}: missing required field {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}", defs)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", defs)


def validate_structured(text: str, schema: dict[str, Any], model: Any = None) -> Any:
    """Parse and validate the model's JSON answer; `OutputParserError` keeps the raw text."""
    try:
        data = extract_json(text)
    except OutputParserError:
        raise
    if model is not None:
        try:
            return model.model_validate(data)
        except Exception as exc:
            raise OutputParserError(f"structured output does not match {model.__name__}: {exc}", text) from exc
    try:
        _check(data, schema, "$", schema.get("$defs", schema.get("definitions", {})))
    except ValueError as exc:
        raise OutputParserError(f"structured output does not match the response schema: {exc}", text) from exc
    return data


def extract_json(text: str) -> Any:
    """Parse JSON that may be wrapped in a code fence or surrounded by prose."""
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else s[3:]
        if s.rstrip().endswith("```"):
            s = s.rstrip()[:-3]
        s = s.strip()
    try:
        return _json.loads(s)
    except ValueError:
        pass
    start = min((i for i in (s.find("{"), s.find("[")) if i >= 0), default=-1)
    if start >= 0:
        closer = "}" if s[start] == "{" else "]"
        end = s.rfind(closer)
        if end > start:
            try:
                return _json.loads(s[start : end + 1])
            except ValueError:
                pass
    preview = text if len(text) <= 200 else text[:200] + "..."
    raise OutputParserError(f"the model's output is not valid JSON: {preview!r}", text)


_SCALAR_CHARS = frozenset("0123456789+-.eEtruefalsn")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class PartialJSONParser:
    """Incremental JSON parser: `feed()` each delta, read `value` for the object so far.

    Strings still being written appear with the text received so far; numbers and literals
    appear once complete. `feed()` returns True when the tree changed shape (a value started
    or finished), which is when a `data` event is worth sending.
    """

    def __init__(self) -> None:
        self.root: Any = None
        self._has_root = False
        self._stack: list[list[Any]] = []  # frames: [container, pending_key, expecting_key]
        self._str: list[str] | None = None
        self._str_is_key = False
        self._str_loc: tuple[Any, Any] | None = None
        self._esc = False
        self._uni: list[str] | None = None
        self._scalar: list[str] | None = None
        self.error: str | None = None

    def _attach(self, value: Any) -> tuple[Any, Any] | None:
        if not self._stack:
            self.root = value
            self._has_root = True
            return None
        frame = self._stack[-1]
        container = frame[0]
        if isinstance(container, list):
            container.append(value)
            return (container, len(container) - 1)
        key = frame[1]
        container[key] = value
        frame[1] = None
        return (container, key)

    def _end_scalar(self) -> None:
        raw = "".join(self._scalar or [])
        self._scalar = None
        try:
            self._attach(_std_json.loads(raw))  # exact big ints (orjson caps at 64 bits)
        except ValueError:
            self.error = f"invalid JSON literal {raw!r}"

    def feed(self, text: str) -> bool:
        changed = False
        for c in text:
            if self.error is not None:
                return changed
            if self._str is not None:
                if self._uni is not None:
                    self._uni.append(c)
                    if len(self._uni) == 4:
                        code = int("".join(self._uni), 16)
                        self._uni = None
                        prev = self._str[-1] if self._str else ""
                        if 0xDC00 <= code <= 0xDFFF and prev and 0xD800 <= ord(prev) <= 0xDBFF:
                            # a \uD83D\uDE00 surrogate pair is one character (json.dumps' default)
                            self._str[-1] = chr(0x10000 + ((ord(prev) - 0xD800) << 10) + (code - 0xDC00))
                        else:
                            self._str.append(chr(code))
                elif self._esc:
                    self._esc = False
                    if c == "u":
                        self._uni = []
                    else:
                        self._str.append(_ESCAPES.get(c, c))
                elif c == "\\":
                    self._esc = True
                elif c == '"':
                    s = "".join(self._str)
                    self._str = None
                    if self._str_is_key:
                        self._stack[-1][1] = s
                        self._stack[-1][2] = False
                    else:
                        loc = self._str_loc
                        if loc is None:
                            self.root = s
                        else:
                            loc[0][loc[1]] = s
                        self._str_loc = None
                    changed = True
                else:
                    self._str.append(c)
                continue
            if self._scalar is not None:
                if c in _SCALAR_CHARS:
                    self._scalar.append(c)
                    continue
                self._end_scalar()
                changed = True
            if c in " \t\r\n":
                continue
            if c == "{" or c == "[":
                container: Any = {} if c == "{" else []
                self._attach(container)
                self._stack.append([container, None, c == "{"])
                changed = True
            elif c == "}" or c == "]":
                if self._stack:
                    self._stack.pop()
                changed = True
            elif c == '"':
                self._str = []
                frame = self._stack[-1] if self._stack else None
                self._str_is_key = bool(frame and isinstance(frame[0], dict) and frame[2])
                if not self._str_is_key:
                    self._str_loc = self._attach("")
                changed = True
            elif c == ":":
                continue
            elif c == ",":
                if self._stack and isinstance(self._stack[-1][0], dict):
                    self._stack[-1][2] = True
            else:
                self._scalar = [c]
        return changed

    def close(self) -> None:
        """Finish a trailing top-level number or literal."""
        if self._scalar is not None:
            self._end_scalar()

    @property
    def value(self) -> Any:
        """A snapshot of the partial object (strings in progress included)."""
        if self._str is not None and not self._str_is_key:
            partial = "".join(self._str)
            if partial and 0xD800 <= ord(partial[-1]) <= 0xDBFF:
                partial = partial[:-1]  # half a surrogate pair: wait for the other half
            loc = self._str_loc
            if loc is None:
                return partial
            loc[0][loc[1]] = partial
        return copy.deepcopy(self.root)


def truncated_output(text: str, max_tokens: int | None) -> OutputTruncatedError:
    """The error for JSON output that `max_tokens` cut off, with what had been parsed so far."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    parser = PartialJSONParser()
    if start >= 0:
        parser.feed(text[start:])
    if max_tokens is not None:
        cut = f'max_tokens={max_tokens} cut the output off (finish_reason="length") before its JSON was complete'
        fix = f"raise max_tokens (e.g. hyperparameters={{'max_tokens': {max_tokens * 4}}})"
    else:
        cut = 'the output limit cut the output off (finish_reason="length") before its JSON was complete'
        fix = "set a higher max_tokens (hyperparameters={'max_tokens': N}); none was set, so the default applied"
    preview = text if len(text) <= 120 else text[:120] + "..."
    return OutputTruncatedError(
        f"{cut}: {fix}. The partial value is on the exception (.partial_value); the text: {preview!r}",
        text,
        parser.value,
        max_tokens,
    )
