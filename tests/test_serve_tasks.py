"""What `/predict` answers for each task, in-process (no HTTP): extractive QA, token classification and the example
plugin's multiple choice, each exported from a tiny model and loaded with `lit_ft.serving.load_served` as the
server's workers load it. The HTTP server itself is tested in tests/test_serve.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lit_ft.module import FineTuner
from lit_ft.serving.loaded import Loaded, load_served
from lit_ft.serving.records import checked_rows, records_for
from lit_ft.training.export import export_model

pytestmark = pytest.mark.usefixtures("single_thread")


def served(task: str, backbone: Path, info: dict[str, Any], out: Path, **data: Any) -> Loaded:
    module = FineTuner(task=task, backbone=str(backbone), info=info)
    export_model(module, out, data={"tokenizer": str(backbone), "max_length": 48, **data})
    return load_served(out)


def answers(loaded: Loaded, *requests: list[Any]) -> list[list[dict[str, Any]]]:
    return records_for(loaded, [checked_rows(loaded, inputs, "truncate") for inputs in requests])


def alike(a: Any, b: Any) -> None:
    if isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-5)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            alike(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            alike(x, y)
    else:
        assert a == b


def test_question_answering_answers_from_each_requests_own_context(tiny_bert: Path, tmp_path: Path) -> None:
    loaded = served("question_answering", tiny_bert, {}, tmp_path / "qa", stride=16)
    first = {"question": "what is it", "context": "the cat sat on the mat " * 12}  # longer than one window
    second = {"question": "what is it", "context": "dog ran in park"}  # no word of the first context
    alone = [answers(loaded, [first])[0][0], answers(loaded, [second])[0][0]]
    together = answers(loaded, [first], [second])
    alike([r[0] for r in together], alone)
    assert alone[1]["answer"] and alone[1]["answer"] in second["context"]  # not a span of the first request's context
    assert alone[0]["question"] == "what is it" and alone[0]["context"] == first["context"]


def test_token_classification_takes_text_or_tokens(tagger_bert: Path, tmp_path: Path) -> None:
    loaded = served("token_classification", tagger_bert, {"label_names": ["O", "B-PER", "I-PER"],
                                                          "tag_scheme": "IOB2"}, tmp_path / "ner")
    by_text, by_tokens = answers(loaded, ["the cat sat"], [{"tokens": ["the", "cat", "sat"]}])
    alike(by_text, by_tokens)
    assert by_text[0]["tokens"] == ["the", "cat", "sat"] and len(by_text[0]["tags"]) == 3


def test_a_plugin_task_serves_through_the_default_hook(tiny_bert: Path, tmp_path: Path) -> None:
    loaded = served("multiple_choice", tiny_bert, {"num_choices": 2}, tmp_path / "mc")
    rows = [{"sent1": "the cat", "sent2": "sat on", "ending0": "the mat", "ending1": "a dog"},
            {"sent1": "a dog", "sent2": "ran in", "ending0": "the park", "ending1": "the cat"}]
    together = answers(loaded, rows)[0]
    alike(together, [answers(loaded, [r])[0][0] | {"id": str(i)} for i, r in enumerate(rows)])
    assert {r["id"] for r in together} == {"0", "1"} and all(r["truncated"] is False for r in together)
