"""A request's arguments are spelled once (`processor._request_arguments`): `process()`,
`stream()` and the sync faces `process_sync()`/`stream_sync()` take exactly those, typed (no
`**kwargs: Any` fallback), and a template key that shadows one must go in `prompt_kwargs=`."""

from __future__ import annotations

import inspect

import pytest

from lmstream import LMRequestProcessor, PromptBuilder, PromptError
from lmstream.processor import _OWN_ARGS, _request_arguments
from lmstream.testing import ScriptedLMInvoker

FACES = ("process", "stream", "process_sync", "stream_sync")


def test_every_face_takes_the_one_spelling_of_the_arguments():
    spelled = list(inspect.signature(_request_arguments).parameters.values())[1:]
    for name in FACES:
        face = inspect.signature(getattr(LMRequestProcessor, name))
        assert list(face.parameters.values())[1:] == spelled, name
        assert face.return_annotation != inspect.Signature.empty, name
    assert "max_lm_calls" in _OWN_ARGS and "kwargs" not in _OWN_ARGS


def test_the_sync_faces_take_the_same_options_as_the_async_ones():
    invoker = ScriptedLMInvoker(["a", "b"])
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), invoker)
    out = lmrp.process_sync(q="go", hyperparameters={"max_tokens": 3}, max_lm_calls=1)
    assert out.text == "ab"
    with lmrp.stream_sync({"q": "go"}, hyperparameters={"temperature": 0}) as s:
        assert "".join(e.value for e in s if e.type == "response") == "ab"
    assert [p.get("max_tokens") for _, p in invoker.calls] == [3, None]
    with pytest.raises(PromptError, match="by name"):
        lmrp.process_sync("go")  # type: ignore[arg-type]  # prompt_kwargs is a mapping, not the text


def test_a_template_key_named_like_an_argument_says_to_use_prompt_kwargs():
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{history}"), ScriptedLMInvoker(["x"]))
    with pytest.raises(PromptError, match="prompt_kwargs"):
        lmrp.process_sync(history=[])
