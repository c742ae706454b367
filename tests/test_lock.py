"""requirements/dev.lock must satisfy pyproject.toml: the test install comes from the lock.

The README's test command and `.ci/run` install `--require-hashes -r requirements/dev.lock`, so
a new release of a dependency never changes what the tests run on. The lock goes stale when
someone edits a range or adds a package in pyproject.toml without re-locking (`nox -s lock`):
then this test names the requirement that the lock no longer meets.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "dev.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")


def locked_pins(text: str) -> dict[str, Version]:
    """name -> pinned version, from a `uv pip compile` / pip-compile requirements file."""
    pins: dict[str, Version] = {}
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def dev_requirements(pyproject: dict[str, object], extra: str = "dev") -> list[Requirement]:
    """Every requirement the `dev` extra pulls in: the base dependencies and each extra it names,
    followed through `lmstream[...]` self-references, with markers evaluated for this Python."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    name = canonicalize_name(project["name"])
    extras: dict[str, list[str]] = project["optional-dependencies"]
    out: list[Requirement] = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    todo = [extra]
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        assert e in extras, f"pyproject.toml names an extra {e!r} that it does not define"
        for raw in extras[e]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == name:
                todo.extend(req.extras)
            else:
                out.append(req)
    env = default_environment()
    return [r for r in out if r.marker is None or r.marker.evaluate({**env, "extra": ""})]


def check(pyproject_text: str, lock_text: str) -> list[str]:
    """The problems that make `lock_text` not a lock of `pyproject_text`'s dev environment."""
    pins = locked_pins(lock_text)
    problems = []
    for req in dev_requirements(tomllib.loads(pyproject_text)):
        key = canonicalize_name(req.name)
        if key not in pins:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pins[key], prereleases=True):
            problems.append(f"the lock pins {req.name}=={pins[key]}, outside {req}")
    return problems


def test_lock_satisfies_pyproject() -> None:
    problems = check((ROOT / "pyproject.toml").read_text(), LOCK.read_text())
    assert not problems, "requirements/dev.lock is stale; refresh it with `nox -s lock`:\n" + "\n".join(problems)


def test_every_pin_is_hashed() -> None:
    """pip installs the lock with --require-hashes: a pin without a hash would fail the install."""
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    unhashed = [b.split()[0] for b in blocks if PIN.match(b) and "--hash=sha256:" not in b]
    assert not unhashed
    assert len(locked_pins(text)) > 50


def test_check_catches_a_stale_lock() -> None:
    """The checker itself: a range moved past the pin, and a package added without re-locking."""
    pyproject = """
[project]
name = "lmstream"
dependencies = ["orjson>=3.9,<4"]
[project.optional-dependencies]
openai = ["openai>=3.0,<4"]
dev = ["lmstream[openai]", "pytest>=8", "tomli>=2; python_version < '3.0'"]
"""
    lock = "orjson==3.10.0 \\\n    --hash=sha256:00\nopenai==3.1.0 \\\n    --hash=sha256:00\npytest==8.3.0 \\\n"
    assert check(pyproject, lock) == []
    assert check(pyproject.replace("openai>=3.0,<4", "openai>=3.2,<4"), lock) == [
        "the lock pins openai==3.1.0, outside openai<4,>=3.2"
    ]
    assert check(pyproject.replace('"pytest>=8"', '"pytest>=8", "nox"'), lock) == ["nox is not in the lock"]


def test_ci_and_readme_install_from_the_lock() -> None:
    """Both test installs go through the lock, then the package itself without dependencies."""
    ci = (ROOT / ".ci" / "run").read_text()
    readme_test = (ROOT / "README.md").read_text().splitlines()[4]
    for where, text in ((".ci/run", ci), ("README.md line 5", readme_test)):
        assert "--require-hashes -r requirements/dev.lock" in text, where
        assert "--no-deps -e ." in text, where
