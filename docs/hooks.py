"""MkDocs hooks for the lmstream site (`hooks:` in mkdocs.yml; not a page).

`lmstream.__all__` ends with `*_INVOKER_CLASSES`, the provider table's class names, which only
exist at run time: static analysis (griffe) cannot expand it and warns, and `--strict` would turn
that one known warning into a failed build. The reference page names the provider classes it
documents itself, so the warning is dropped here, and only that one.
"""

from __future__ import annotations

import logging
from typing import Any

_KNOWN = "Unsupported item in lmstream.__all__: _INVOKER_CLASSES"


class _DropKnownWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _KNOWN not in record.getMessage()


def on_startup(**_: Any) -> None:
    for name in ("griffe", "mkdocs.plugins.griffe", "mkdocs.plugins.mkdocstrings", "mkdocstrings"):
        logging.getLogger(name).addFilter(_DropKnownWarning())
