"""Configuration errors said in the command line's words (`--base-url URL`, `--api-key KEY`).

The library's messages name its keywords (`config={'base_url': ...}`, `api_key=`); a user at
the command line needs the option to type instead. Shared by `lmstream`, `serve` and `worker`.
"""

from __future__ import annotations

from .errors import ConfigurationError

__all__ = ["cli_message"]


def cli_message(exc: BaseException, model: str, key_option: bool = True) -> str:
    """The text to print for `exc` (a `ConfigurationError` with a `setting`, or as it is).

    `key_option`: whether this command has `--api-key` for the provider's key (`serve`'s
    `--api-key` is the server's own key, so there only the environment variable applies).
    """
    if not isinstance(exc, ConfigurationError):
        return str(exc)
    if exc.setting == "base_url":
        env = f" (or set {exc.env_var})" if exc.env_var else ""
        return f"{model} needs the server's URL: pass --base-url URL{env}, e.g. --base-url http://127.0.0.1:8080/v1"
    if exc.setting == "api_key" and exc.env_var:
        how = f"set the environment variable {exc.env_var}"
        if key_option:
            how += " or pass --api-key KEY"
        return f"no API key for {model}: {how} (or put {exc.env_var}=... in a .env file here)"
    return str(exc)
