"""What the tests of the providers beyond the first four share: a fast retry policy, a text."""

from __future__ import annotations

from lmstream import RetryConfig

FAST = RetryConfig(max_retries=2, base_delay=0.01)
TEXT = ("Here", " are", " some", " ideas", ".")
