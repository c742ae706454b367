"""The model options `lmstream`, `lmstream serve` and `lmstream worker` share: one definition."""

from __future__ import annotations

import argparse

import pytest

from lmstream import _cli_options
from lmstream._cli_options import DEFAULT_MODEL, MODEL_OPTIONS, ModelOption, invoker_config, literal_template
from lmstream.cli import _parser as answer_parser
from lmstream.prompt import PromptBuilder
from lmstream.redis.cli import parser as worker_parser
from lmstream.server.cli import _parser as serve_parser

PARSERS = {"lmstream": answer_parser, "serve": serve_parser, "worker": worker_parser}
REQUIRED = {"worker": ["--redis", "redis://127.0.0.1:6379/0"]}
#: shared flags a command declares itself, with its own help (their values still count as shared)
OWN_MEANING = {"serve": ("--max-tokens",)}


def parse(command: str, *argv: str) -> argparse.Namespace:
    return PARSERS[command]().parse_args([*REQUIRED.get(command, []), *argv])


def option_strings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", list(PARSERS))
def test_every_command_takes_the_shared_model_options_with_one_default_and_help(command: str) -> None:
    actions = option_strings(PARSERS[command]())
    for opt in MODEL_OPTIONS:
        if opt.flags[0] in OWN_MEANING.get(command, ()):
            continue
        for flag in opt.flags:
            assert actions[flag].help == opt.help, (command, flag)
            assert actions[flag].default == opt.default, (command, flag)
    args = parse(command)
    assert args.model == DEFAULT_MODEL and args.system == "" and args.base_url is None
    assert invoker_config(args) is None  # nothing asked for: no key reaches a provider that lacks it


@pytest.mark.parametrize("command", list(PARSERS))
def test_one_new_model_option_reaches_all_three_commands(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    new = ModelOption(("--new-option",), "a provider option added later", type=int, config="new_option")
    monkeypatch.setattr(_cli_options, "MODEL_OPTIONS", (*MODEL_OPTIONS, new))
    args = parse(command, "--new-option", "512", "--base-url", "http://127.0.0.1:9/v1")
    assert invoker_config(args) == {"new_option": 512, "base_url": "http://127.0.0.1:9/v1"}


@pytest.mark.parametrize("command", list(PARSERS))
def test_local_engine_flags_on_every_command(command: str) -> None:
    args = parse(command, "--parallel", "4", "--threads", "1", "--n-ctx", "1024", "--max-tokens", "64")
    assert invoker_config(args) == {
        "parallel": 4,
        "n_threads": 1,
        "n_ctx": 1024,
        "default_hyperparameters": {"max_tokens": 64},
    }
    from lmstream import LocalLMInvoker, build_lm_invoker

    inv = build_lm_invoker(args.model, config=invoker_config(args))
    assert isinstance(inv, LocalLMInvoker)
    assert (inv.parallel, inv.n_threads, inv.n_ctx, inv.default_hyperparameters) == (4, 1, 1024, {"max_tokens": 64})


def test_the_answer_commands_own_options_become_default_hyperparameters() -> None:
    from lmstream.cli import ANSWER_OPTIONS

    args = parse("lmstream", "--max-tokens", "12", "--temperature", "0", "hi")
    assert invoker_config(args, ANSWER_OPTIONS) == {"default_hyperparameters": {"max_tokens": 12, "temperature": 0.0}}
    assert invoker_config(parse("lmstream", "hi"), ANSWER_OPTIONS) is None


def test_a_system_prompt_with_braces_formats_to_itself() -> None:
    text = 'Answer as {role}; JSON like {"a": 1} is fine.'
    messages = PromptBuilder(system_template=literal_template(text), user_template="{prompt}").format(prompt="hi")
    assert messages[0].text == text


def test_worker_takes_as_many_jobs_as_the_local_engine_generates_at_once() -> None:
    from lmstream import build_lm_invoker
    from lmstream.redis.cli import default_concurrency
    from lmstream.testing import ScriptedLMInvoker

    assert parse("worker").concurrency is None
    assert default_concurrency(build_lm_invoker("local/smollm2-135m", config={"parallel": 3})) == 3
    assert default_concurrency(build_lm_invoker("local/smollm2-135m")) == 8
    assert default_concurrency(ScriptedLMInvoker(["hi"])) == 4
