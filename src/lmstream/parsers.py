"""Output parsers: turn the model's final text into something else."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .structured import extract_json

T = TypeVar("T")

__all__ = ["BaseOutputParser", "JSONOutputParser"]


class BaseOutputParser(Generic[T]):
    """Subclass and implement `parse(text)`; raise `OutputParserError` with the raw text."""

    def parse(self, text: str) -> T:
        raise NotImplementedError


class JSONOutputParser(BaseOutputParser[Any]):
    """Parse JSON, tolerating a code fence or prose around it."""

    def parse(self, text: str) -> Any:
        return extract_json(text)
