"""System parts some tests need (Debian packages, npm packages), installed when missing.

The README's one test command must work on a fresh machine, so the tests install what they
use: `ensure_apt("chromium")` runs apt-get (as root) when the package's program is missing,
`ensure_npm(dir)` runs `npm ci` from the committed package-lock.json. When that fails, the
test run FAILS under CI=true (a missing component must never pass as a silent skip there) and
is skipped with a loud reason elsewhere (a developer without root or network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

__all__ = ["ensure_apt", "ensure_npm", "missing"]

APT_TIMEOUT_S = 900
NPM_TIMEOUT_S = 300
_lock = threading.Lock()
_apt_updated = False


def missing(reason: str) -> None:
    """Fail under CI=true, skip (loudly) otherwise. Never returns."""
    message = f"SYSTEM DEPENDENCY MISSING: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[bool, str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{' '.join(cmd)}: {exc}"
    tail = (proc.stdout + proc.stderr)[-800:]
    return proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}: {tail}"


def ensure_apt(package: str, program: str | None = None) -> str:
    """The path of `program` (default: the package name), installing `package` if it is missing."""
    global _apt_updated
    program = program or package
    found = shutil.which(program)
    if found:
        return found
    with _lock:
        found = shutil.which(program)
        if found:
            return found
        if shutil.which("apt-get") is None:
            missing(f"{program} not found and apt-get is not available to install {package}")
        if os.geteuid() != 0:
            missing(f"{program} not found; install it with: sudo apt-get install -y {package}")
        if not _apt_updated:
            ok, why = _run(["apt-get", "update", "-q"], APT_TIMEOUT_S)
            if not ok:
                missing(f"apt-get update failed while installing {package}: {why}")
            _apt_updated = True
        ok, why = _run(["apt-get", "install", "-y", "-q", package], APT_TIMEOUT_S)
        found = shutil.which(program)
        if not ok or not found:
            missing(f"could not install {package} ({program} still missing): {why}")
        return found


def ensure_npm(directory: Path, marker: str | None = None) -> Path:
    """`npm ci` in `directory` unless its node_modules is already in place (`marker`: a package
    that must be installed, e.g. "ai"); needs node and npm (installed from Debian if missing)."""
    ensure_apt("nodejs", "node")
    ensure_apt("npm")
    modules = directory / "node_modules"
    lock = directory / "package-lock.json"
    stamp = modules / ".package-lock.json"  # written by npm; newer than the lock when installed from it
    target = modules / marker if marker else modules
    fresh = target.exists() and stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime
    if fresh:
        return modules
    with _lock:
        ok, why = _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], NPM_TIMEOUT_S, cwd=directory)
        if not ok or not target.exists():
            missing(f"npm ci in {directory} failed: {why}")
    return modules
