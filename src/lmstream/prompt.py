"""Prompt templates and messages.

Templates use `{name}` placeholders and `{{`/`}}` for literal braces. Values are inserted
verbatim: a value containing braces is never re-interpreted as a template.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import PromptError
from .types import HYPERPARAMETER_NAMES, Attachment, ThinkingBlock, ToolCall, ToolResult

__all__ = ["Message", "PromptBuilder", "Role", "Content", "text_key"]

Role = Literal["system", "user", "assistant", "tool"]
Content = str | ToolCall | ToolResult | Attachment | ThinkingBlock
_ROLES = ("system", "user", "assistant", "tool")


@dataclass(slots=True)
class Message:
    """One chat message; `contents` mixes text, tool calls, tool results and attachments."""

    role: Role
    contents: list[Content] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise PromptError(f"unknown message role {self.role!r}; use one of {', '.join(_ROLES)}")
        if isinstance(self.contents, (str, ToolCall, ToolResult, Attachment, ThinkingBlock)):
            self.contents = [self.contents]
        else:
            self.contents = list(self.contents)

    @classmethod
    def system(cls, contents: str | Sequence[Content]) -> Message:
        return cls("system", _as_list(contents))

    @classmethod
    def user(cls, contents: str | Sequence[Content]) -> Message:
        return cls("user", _as_list(contents))

    @classmethod
    def assistant(cls, contents: str | Sequence[Content] = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        items = _as_list(contents) if contents else []
        return cls("assistant", [*items, *tool_calls])

    @classmethod
    def tool(cls, results: ToolResult | Sequence[ToolResult]) -> Message:
        return cls("tool", _as_list(results))

    @property
    def text(self) -> str:
        """The text parts joined."""
        return "".join(c for c in self.contents if isinstance(c, str))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [c for c in self.contents if isinstance(c, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResult]:
        return [c for c in self.contents if isinstance(c, ToolResult)]

    @property
    def attachments(self) -> list[Attachment]:
        return [c for c in self.contents if isinstance(c, Attachment)]

    @classmethod
    def coerce(cls, item: Message | Mapping[str, Any] | tuple[str, Any]) -> Message:
        """Accept a `Message`, a `{"role", "content"}` dict or a `(role, content)` pair."""
        if isinstance(item, Message):
            return item
        if isinstance(item, Mapping):
            content = item.get("contents", item.get("content", ""))
            return cls(item["role"], _as_list(content))
        if isinstance(item, tuple) and len(item) == 2:
            return cls(item[0], _as_list(item[1]))  # type: ignore[arg-type]
        raise PromptError(f"history items must be Message, dict or (role, content); got {type(item).__name__}")


def _as_list(contents: Any) -> list[Content]:
    if isinstance(contents, (str, ToolCall, ToolResult, Attachment, ThinkingBlock)):
        return [contents]
    return list(contents)


class _Template:
    """A parsed template: literal chunks and placeholder names, rendered without `str.format`."""

    __slots__ = ("keys", "parts")

    def __init__(self, template: str, which: str) -> None:
        parts: list[tuple[str, str | None]] = []
        keys: list[str] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise PromptError(
                f"{which} template is malformed ({exc}); write literal braces as '{{{{' and '}}}}'"
            ) from exc
        for literal, name, spec, conv in parsed:
            if name is not None and (not name.isidentifier() or spec or conv):
                raise PromptError(
                    f"{which} template placeholder {{{name}{'!' + conv if conv else ''}"
                    f"{':' + spec if spec else ''}}} is not a plain {{name}}; "
                    "use identifiers only, and '{{' / '}}' for literal braces"
                )
            parts.append((literal, name))
            if name is not None and name not in keys:
                keys.append(name)
        self.parts = parts
        self.keys = keys

    def render(self, values: Mapping[str, Any]) -> str:
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                v = values[name]
                out.append(v if isinstance(v, str) else str(v))
        return "".join(out)


class PromptBuilder:
    """Formats a system and a user template into messages: system, then history, then user."""

    def __init__(
        self,
        system_template: str = "",
        user_template: str = "",
        key_defaults: Mapping[str, Any] | None = None,
        ignore_extra_keys: bool = False,
    ) -> None:
        self.system_template = system_template
        self.user_template = user_template
        self.key_defaults = dict(key_defaults or {})
        self.ignore_extra_keys = ignore_extra_keys
        self._system = _Template(system_template, "system")
        self._user = _Template(user_template, "user")
        seen: dict[str, None] = dict.fromkeys(self._system.keys)
        seen.update(dict.fromkeys(self._user.keys))
        self.prompt_keys: list[str] = list(seen)
        unknown_defaults = sorted(set(self.key_defaults) - set(self.prompt_keys))
        if unknown_defaults and not ignore_extra_keys:
            raise PromptError(
                f"key_defaults names keys no template uses: {', '.join(unknown_defaults)}; "
                f"the templates use: {', '.join(self.prompt_keys) or '(none)'}",
                unknown=unknown_defaults,
            )

    def positional_value_error(self, value: object) -> PromptError:
        """The error for `process("Hi")`: template values go by name, so show the call that works."""
        key = self.prompt_keys[0] if len(self.prompt_keys) == 1 else None
        example = f"{key}={value!r:.40}" if key else "prompt_kwargs={...}"
        return PromptError(
            f"prompt: the template values go by name, not position; got {type(value).__name__} {value!r:.40}: "
            f"call process({example}) or stream({example}) "
            f"(the templates use: {', '.join(self.prompt_keys) or 'no keys'})",
            missing=[],
            unknown=[],
        )

    def format(
        self,
        history: Iterable[Message | Mapping[str, Any]] | None = None,
        extra_contents: Sequence[Content] | None = None,
        **kwargs: Any,
    ) -> list[Message]:
        """Return the messages; raises `PromptError` naming every missing and unknown key."""
        return self.format_values(kwargs, history, extra_contents)

    def format_values(
        self,
        values: Mapping[str, Any],
        history: Iterable[Message | Mapping[str, Any]] | None = None,
        extra_contents: Sequence[Content] | None = None,
    ) -> list[Message]:
        """`format()` with the template values as one mapping, so a key may be named anything
        (even `history`)."""
        kwargs = values
        values = {**self.key_defaults, **kwargs}
        missing = [k for k in self.prompt_keys if k not in values]
        unknown = [] if self.ignore_extra_keys else sorted(k for k in kwargs if k not in self.prompt_keys)
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing value for {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown key {', '.join(unknown)}")
            settings = [k for k in unknown if k in HYPERPARAMETER_NAMES]
            hint = (
                f"; {', '.join(settings)} {'is a model setting' if len(settings) == 1 else 'are model settings'}: "
                f"pass hyperparameters={{{', '.join(f'{k!r}: ...' for k in settings)}}}"
                if settings
                else ""
            )
            raise PromptError(
                "prompt: " + "; ".join(problems) + f" (the templates use: {', '.join(self.prompt_keys) or 'no keys'}; "
                "pass values as keyword arguments or prompt_kwargs=, or set key_defaults)" + hint,
                missing=missing,
                unknown=unknown,
            )
        messages: list[Message] = []
        if self.system_template:
            messages.append(Message("system", [self._system.render(values)]))
        if history:
            messages.extend(Message.coerce(m) for m in history)
        user_contents: list[Content] = []
        if self.user_template:
            user_contents.append(self._user.render(values))
        if extra_contents:
            user_contents.extend(_as_list(extra_contents))
        if user_contents:
            messages.append(Message("user", user_contents))
        return messages

    def __repr__(self) -> str:
        return f"PromptBuilder(system_template={self.system_template!r}, user_template={self.user_template!r})"


def text_key(builder: PromptBuilder) -> str | None:
    """Where a user's plain text goes (the server's chat text, a batch line's `prompt`): the user
    template's one key without a default, or None (no key: the text is the user message itself)."""
    keys = [k for _, k, _, _ in string.Formatter().parse(builder.user_template) if k]
    free = [k for k in dict.fromkeys(keys) if k not in builder.key_defaults]
    if len(free) > 1:
        raise ValueError(
            f"the user template has several keys without defaults ({', '.join(free)}); "
            "a plain prompt (the server's user text, a batch line's prompt) fills one key: "
            "set key_defaults for the others, or send prompt_kwargs"
        )
    return free[0] if free else None
