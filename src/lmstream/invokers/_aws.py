"""botocore exceptions -> lmstream errors (by class name: botocore stays an optional import)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError, LMTimeoutError, ProviderError, RateLimitError
from ._http import parse_retry_after

__all__ = ["map_aws_error"]

#: in-band exception events worth a retry (before the first token)
_TRANSIENT = {
    "internalServerException",
    "serviceUnavailableException",
    "throttlingException",
    "modelStreamErrorException",
    "InternalServerException",
    "ServiceUnavailableException",
    "ThrottlingException",
    "ModelStreamErrorException",
}
#: botocore's event-stream framing errors (bad prelude, CRC mismatch, oversized frame)
_FRAMING = {
    "ParserError",
    "DuplicateHeader",
    "InvalidHeadersLength",
    "InvalidPayloadLength",
    "ChecksumMismatch",
    "NoInitialResponseError",
}


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def map_aws_error(provider: str, exc: BaseException) -> BaseException:
    """A botocore/urllib3 exception -> the matching lmstream error (unknown ones unchanged)."""
    names = _names(exc)
    if "ClientError" in names:
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = f"{error.get('Message') or exc} ({code})" if code else str(exc)
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        if "EventStreamError" in names or not isinstance(status, int):
            # an exception event inside the 200 stream (`:message-type: exception`)
            return ProviderError(f"in-band error: {message}", provider=provider, retryable=code in _TRANSIENT)
        retry_after = parse_retry_after(meta.get("HTTPHeaders") or {})
        if status == 429 or code in ("ThrottlingException", "TooManyRequestsException"):
            return RateLimitError(message, status_code=status, provider=provider, retry_after=retry_after)
        if status in (401, 403):
            message += " — check the API key or AWS credentials (they were sent but rejected)"
        return ProviderError(message, status_code=status, provider=provider, retry_after=retry_after)
    if names & _FRAMING:
        return ProviderError(f"malformed stream data: {type(exc).__name__}: {exc}", provider=provider, retryable=False)
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return ConfigurationError(
            "no AWS credentials for Bedrock: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
            "or pass a Bedrock API key as credentials= (or AWS_BEARER_TOKEN_BEDROCK)"
        )
    if "NoRegionError" in names:
        return ConfigurationError("no AWS region for Bedrock: set AWS_REGION or pass config={'region': ...}")
    if "ParamValidationError" in names:
        return ConfigurationError(f"Bedrock rejected the request before sending it: {exc}")
    if names & {"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError"}:
        return LMTimeoutError(f"{provider}: timed out ({type(exc).__name__})", retryable=True)
    if names & {"EndpointConnectionError", "ConnectionError", "ProtocolError", "HTTPClientError", "HTTPError"}:
        return ProviderError(f"connection failed: {type(exc).__name__}: {exc}", provider=provider, retryable=True)
    if isinstance(exc, OSError):
        return ProviderError(f"connection failed: {type(exc).__name__}: {exc}", provider=provider, retryable=True)
    return exc
