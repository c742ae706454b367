"""Messages -> prompt text with the model's own Jinja chat template (as llama-cpp-python's
`create_chat_completion` renders it), and the thread defaults."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .native import Model

__all__ = ["default_threads", "physical_cores", "render"]

#: for a GGUF that carries no chat template
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_formatters: dict[str, Any] = {}
_lock = threading.Lock()


def render(model: Model, messages: list[dict[str, str]]) -> str:
    """The prompt text, ending with the assistant turn's opening (`add_generation_prompt`)."""
    with _lock:
        formatter = _formatters.get(model.path)
        if formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            formatter = _formatters[model.path] = Jinja2ChatFormatter(
                template=model.chat_template or CHATML, eos_token=model.eos_text, bos_token=model.bos_text
            )
    return str(formatter(messages=messages).prompt)  # type: ignore[arg-type]


def physical_cores() -> int:
    """Physical cores this process may run on (hyperthread siblings counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            cores.add(("?", str(cpu)))
    return max(1, len(cores))


def default_threads() -> int:
    """Half the physical cores, at least one.

    llama.cpp's compute threads wait for each other at every operation by spinning, so when
    other processes hold the cores a team of all-the-cores crawls: on this project's 2-core
    machine at load average 12, 2 threads decoded 1.1 tokens/s for one sequence and 3.6 for
    eight, 1 thread 32 and 48 (shared/tools' batched-decode loop). Half the cores keeps most
    of the idle-machine speed and holds up under load.
    """
    return max(1, physical_cores() // 2)
