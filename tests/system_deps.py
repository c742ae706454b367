"""System parts the tests need (redis-server, chromium, ...), installed with apt when missing.

A fresh CI machine has only what the project's files install, so the tests install what they
use. Without root or apt the test is skipped, except under CI=true, where a missing part fails the
run (a green CI must never hide a missing install step).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

__all__ = ["ensure_apt", "ensure_binary"]

_lock = threading.Lock()
_updated = False
_tried: dict[str, str | None] = {}


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: a missing system part fails the run)", pytrace=False)
    pytest.skip(what)


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # Another process (another test run, an engineer) may hold the dpkg lock: wait for it.
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def ensure_apt(package: str, binary: str | None = None) -> str:
    """Return the path of `binary` (default: the package name), apt-installing `package` if needed."""
    global _updated
    binary = binary or package
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if os.path.exists(f"/usr/bin/{binary}") else None)
    if found:
        return found
    with _lock:
        if package in _tried:
            path = _tried[package]
            if path:
                return path
            _missing(f"{binary} is not installed and `apt-get install {package}` failed earlier")
        path = None
        detail = ""
        if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
            try:
                if not _updated:
                    _apt("update", "-qq", timeout=900)
                    _updated = True
                res = _apt("install", "-y", "-qq", "--no-install-recommends", package, timeout=1200)
                detail = (res.stderr or res.stdout)[-500:]
            except subprocess.TimeoutExpired:
                detail = "apt-get timed out"
            path = shutil.which(binary) or (f"/usr/bin/{binary}" if os.path.exists(f"/usr/bin/{binary}") else None)
        else:
            detail = "apt-get is not available or this is not root"
        _tried[package] = path
        if path:
            return path
    _missing(f"{binary} is not installed and `apt-get install {package}` failed: {detail}")
    raise AssertionError("unreachable")


def ensure_binary(binary: str, package: str | None = None) -> str:
    """Like `ensure_apt`, named by the binary."""
    return ensure_apt(package or binary, binary)
