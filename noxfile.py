"""nox sessions: `pip install nox uv`, then `nox -s NAME` (`nox -l` lists them).

- `tests`: the whole suite on the locked environment (requirements/dev.lock), as CI runs it.
- `lowest`: the lowest version of every direct dependency that pyproject.toml allows
  (`uv pip install --resolution lowest-direct`), then the provider, wire and server tests.
- `latest`: the newest allowed versions, resolved fresh (no cache of index pages), same tests.
- `lint`: ruff and mypy --strict, on the locked environment.
- `docs`: `mkdocs build --strict`.
- `lock`: refresh requirements/dev.lock to the newest versions pyproject.toml allows.

llama-cpp-python is built from source (about 6 minutes on 2 cores). uv keeps its own cache, so the
sessions build its wheel once with pip (pip's wheel cache makes that instant after the first build)
into `.nox/wheelhouse` and point uv there with `--find-links`.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
LOCK = "requirements/dev.lock"
WHEELHOUSE = ROOT / ".nox" / "wheelhouse"
LLAMA = "llama-cpp-python==0.3.36"
PYTHON = "3.11"
# the tests that meet the SDKs and the server stack: what `lowest` and `latest` prove
RANGE_TESTS = [
    "tests/test_providers.py",
    "tests/test_more_providers.py",
    "tests/test_provider_table.py",
    "tests/test_sdk_errors.py",
    "tests/test_missing_extras.py",
    "tests/test_wire_sdks.py",
    "tests/test_wire_sdks_more.py",
    "tests/test_wire_faults.py",
    "tests/test_wire_attachments.py",
    "tests/test_framework_adapters.py",
    "tests/test_mcp.py",
    "tests/test_openai_compatible.py",
    "tests/test_openai_api.py",
    "tests/test_openai_api_clients.py",
    "tests/test_server_app.py",
    "tests/test_server_cli.py",
    "tests/test_server_bounds.py",
    "tests/test_server_hardening.py",
    "tests/test_redis_stream.py",
]
BUILD_ENV = {"CMAKE_ARGS": os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=OFF")}


def _wheelhouse(session: nox.Session) -> list[str]:
    """Build llama-cpp-python's wheel once with pip (its cache), for uv to find."""
    if not any(WHEELHOUSE.glob("llama_cpp_python-0.3.36-*.whl")):
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        session.install("pip")
        session.run("python", "-m", "pip", "wheel", "--no-deps", "-w", str(WHEELHOUSE), LLAMA, env=BUILD_ENV)
    return ["--find-links", str(WHEELHOUSE)]


def _install_locked(session: nox.Session) -> None:
    session.install("--require-hashes", "-r", LOCK, *_wheelhouse(session), env=BUILD_ENV)
    session.install("--no-deps", "-e", ".")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The suite on the locked environment (`nox -s tests -- -x tests/test_lock.py` for a part)."""
    _install_locked(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


def _range_session(session: nox.Session, resolution: str) -> None:
    extra = ["--refresh"] if resolution == "highest" else []
    session.install(f"--resolution={resolution}", *extra, *_wheelhouse(session), "-e", ".[dev]", env=BUILD_ENV)
    session.run(
        "python",
        "-c",
        "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in "
        "['openai','httpx','anthropic','google-genai','boto3','litellm','langchain-core','mcp',"
        "'redis','starlette','uvicorn','orjson']))",
    )
    # pytest options after `--` are added to the range tests; name test files to run those instead
    files = [a for a in session.posargs if a.startswith("tests/")]
    opts = [a for a in session.posargs if not a.startswith("tests/")]
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *opts, *(files or RANGE_TESTS))


@nox.session(python=PYTHON, reuse_venv=False)
def lowest(session: nox.Session) -> None:
    """The lowest allowed version of each direct dependency: the `>=` bounds are true."""
    _range_session(session, "lowest-direct")


@nox.session(python=PYTHON, reuse_venv=False)
def latest(session: nox.Session) -> None:
    """The newest allowed versions, resolved fresh: what `pip install lmstream[...]` gives a user today."""
    _range_session(session, "highest")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict (config in pyproject.toml)."""
    _install_locked(session)
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site, strict: a broken link or reference fails."""
    _install_locked(session)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / ".nox" / "site"))


@nox.session(python=False)
def lock(session: nox.Session) -> None:
    """Refresh requirements/dev.lock to the newest versions pyproject.toml allows (needs uv)."""
    session.run(
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        "--extra",
        "dev",
        "--generate-hashes",
        "--python-version",
        PYTHON,
        "--upgrade",
        "-o",
        LOCK,
    )
