"""Which attachments each wire takes, and the one error every adapter raises for the rest.

A file is never dropped: an adapter that cannot place one raises `ConfigurationError` naming the
kind (image, pdf, audio, text), the API, and models that do take it.
"""

from __future__ import annotations

from ..errors import ConfigurationError
from ..types import Attachment

__all__ = ["CAN_TAKE", "refuse", "text_of"]

#: kind -> model ids (examples) whose wire takes it, quoted in errors
CAN_TAKE: dict[str, str] = {
    "image": "openai/gpt-4.1-mini, openai-chat/gpt-4o-mini, anthropic/claude-haiku-4-5, google/gemini-2.5-flash, "
    "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0, ollama/llava",
    "pdf": "openai/gpt-4.1-mini, openai-chat/gpt-4o-mini, anthropic/claude-haiku-4-5, google/gemini-2.5-flash, "
    "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0",
    "audio": "openai-chat/gpt-4o-audio-preview, google/gemini-2.5-flash",
    "text": "every model (a text file is sent as text where the API has no file part)",
}
#: kind -> model ids that accept it given as a URL (the provider fetches it; lmstream never does)
CAN_FETCH: dict[str, str] = {
    "image": "openai/..., openai-chat/..., anthropic/..., google/... (file_data), xai/...",
    "pdf": "openai/... (file_url), anthropic/..., google/... (file_data)",
    "audio": "google/... (file_data)",
    "text": "openai/... (file_url), google/... (file_data)",
}


def _name(a: Attachment) -> str:
    return f" ({a.filename})" if a.filename else ""


def refuse(api: str, a: Attachment, why: str = "") -> ConfigurationError:
    """The error for an attachment `api` cannot carry; `why` adds what to do instead."""
    if a.url is not None:
        msg = (
            f"{api} does not fetch {a.kind} URLs{_name(a)} and lmstream never fetches a URL itself; "
            f"pass the bytes (Attachment.from_path / from_bytes), or use a model that fetches URLs: "
            f"{CAN_FETCH.get(a.kind, 'none')}"
        )
    else:
        msg = f"{api} cannot take {a.kind} attachments ({a.mime_type}){_name(a)}; models that can: " + CAN_TAKE.get(
            a.kind, "none"
        )
    return ConfigurationError(msg + (f". {why}" if why else ""), setting="attachments")


def text_of(a: Attachment) -> str:
    """A text file as a text part: its name on the first line, so the model knows it is a file."""
    head = f"[file {a.filename}]\n" if a.filename else "[file]\n"
    return head + a.text()
