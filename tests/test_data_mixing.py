"""Data mixing (`data.sources`): sources of different row formats in one run, each with its own settings; weights
and row caps give exact counts, sampled with `data.mix_seed`; every split keeps its rows numbered 0..n-1 with ids
prefixed by the source, so predictions join back to their inputs."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path
from typing import Any

import pytest
from helpers import QUIET
from sft_fixtures import chat_rows, write_jsonl

from lit_ft.commands.cli import main, run
from lit_ft.data_summary import data_summary
from lit_ft.io import read_jsonl
from lit_ft.mixing import SOURCE_COLUMN, MixSource, sample_rows
from lit_ft.rows import ROW
from lit_ft.tasks.sft import SFTData
from lit_ft.tasks.sft.render import ALPACA_PROMPT_NO_INPUT

WORDS = ["cat", "mat", "sat", "hat", "bat"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """An Alpaca JSON list (10 rows, validation carved from it) and chat JSONL files (8 train, 2 validation), each
    with 2 rows to predict in its own shape."""
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": f"repeat {w}", "input": "", "output": f"{w} {w}"}
                                  for w in WORDS * 2]))
    return {
        "alpaca": str(alpaca),
        "alpaca_predict": write_jsonl([{"instruction": f"repeat {w}"} for w in ("dog", "fox")],
                                      tmp_path / "alpaca_predict.jsonl"),
        "chat": write_jsonl(chat_rows(8), tmp_path / "chat.jsonl"),
        "chat_val": write_jsonl(chat_rows(2), tmp_path / "chat_val.jsonl"),
        "chat_predict": write_jsonl([{"messages": [{"role": "user", "content": f"hi {i}"}]} for i in range(2)],
                                    tmp_path / "chat_predict.jsonl"),
    }


def mixed(files: dict[str, str], weight: float = 1.5, max_rows: int = 3) -> list[dict[str, Any]]:
    return [
        {"name": "alpaca", "train": files["alpaca"], "validation_fraction": 0.2, "predict": files["alpaca_predict"],
         "weight": weight, "settings": {"format": "alpaca"}},
        {"name": "chat", "train": files["chat"], "validation": files["chat_val"], "predict": files["chat_predict"],
         "max_rows": max_rows, "settings": {"format": "chat"}},
    ]


def data(llama: Path, sources: list[dict[str, Any]], seed: int = 7) -> SFTData:
    return SFTData(tokenizer=str(llama), max_length=128, mix_seed=seed, sources=[MixSource(**s) for s in sources])


def per_source(dm: SFTData, split: str) -> dict[str, int]:
    raw = dm.raw(split)
    assert raw is not None
    return dict(collections.Counter(raw[SOURCE_COLUMN]))


def test_fit_on_an_alpaca_and_a_chat_source_then_predict_joins_back(tmp_path: Path, llama: Path,
                                                                    files: dict[str, str]) -> None:
    config = tmp_path / "mix.yaml"
    config.write_text(json.dumps({"data": {"class_path": "lit_ft.tasks.sft.SFTData", "init_args": {
        "sources": mixed(files), "mix_seed": 7, "batch_size": 4, "max_length": 128}}}))
    args = ["--model.task", "sft", "--model.backbone", str(llama), "--config", str(config),
            "--model.task_options.max_new_tokens", "3", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.logger", "false", "--trainer.precision", "32-true", "--seed_everything", "0", *QUIET]
    cli = run(["fit", *args, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"])
    assert cli is not None and cli.trainer.global_step == 2
    dm = cli.datamodule
    # alpaca: 8 of its 10 rows train (2 held out), weight 1.5 -> each once and 4 of them again; chat capped at 3
    assert per_source(dm, "train") == {"alpaca": 12, "chat": 3}
    assert per_source(dm, "validation") == {"alpaca": 2, "chat": 2}  # evaluation is unweighted
    assert sorted(collections.Counter(i for i in dm.raw("train")["id"] if i.startswith("alpaca/")).values()) \
        == [1] * 4 + [2] * 4
    assert data_summary(dm)[1] == "mix (data.mix_seed 7): alpaca 12 (weight 1.5 of 8), chat 3 (max_rows 3 of 8)"
    assert dm.epoch_batches() == math.ceil(15 / 4)  # `lit_ft check` and the LR schedule count the mixed split
    for split in ("train", "validation", "predict"):  # each source encoded in its own format
        raw, features = dm.raw(split), dm.features(split)
        assert raw[ROW] == features[ROW] == list(range(len(raw))) and raw["id"] == features["id"]
        for source, ids in zip(raw[SOURCE_COLUMN], features["input_ids"], strict=True):
            text = dm.tokenizer.decode(ids)
            assert ("### Instruction:" in text) == (source == "alpaca") and ("<|user|>" in text) == (source == "chat")
    card = (tmp_path / "run" / "export" / "README.md").read_text()
    assert "on a mix of 2 sources: `alpaca` (`alpaca.json`, weight 1.5), `chat` (`chat.jsonl`, max_rows 3)." in card
    run(["predict", *args, "--ckpt_path", "best"])
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert [r["id"] for r in records] == ["alpaca/0", "alpaca/1", "chat/0", "chat/1"]
    assert [r["prompt"] for r in records] == [ALPACA_PROMPT_NO_INPUT.format(instruction="repeat dog"),
                                              ALPACA_PROMPT_NO_INPUT.format(instruction="repeat fox"),
                                              "<s><|user|>hi 0<|assistant|>", "<s><|user|>hi 1<|assistant|>"]


def test_the_sample_follows_the_seed(llama: Path, files: dict[str, str]) -> None:
    sources = mixed(files, weight=0.5, max_rows=5)
    modules = [data(llama, sources, seed) for seed in (1, 1, 2)]
    first, again, other = (dm.raw("train")["id"] for dm in modules)
    assert first == again and first != other
    for dm in modules:  # each sample encoded, not a cached encoding of another one
        assert dm.features("train")["id"] == dm.raw("train")["id"]
    assert collections.Counter(i.split("/")[0] for i in first) == collections.Counter(
        i.split("/")[0] for i in other) == {"alpaca": 4, "chat": 5}
    assert len(set(first)) == len(first)  # below weight 1 no row repeats


@pytest.mark.parametrize(("n", "weight", "max_rows", "taken"),
                         [(10, 2.0, None, 20), (10, 0.25, None, 2), (10, 1.5, 12, 12), (7, None, 3, 3),
                          (7, None, 30, 7), (3, 3.4, None, 10)])
def test_weights_and_caps_give_exact_counts(n: int, weight: float | None, max_rows: int | None, taken: int) -> None:
    import random

    rows = sample_rows(n, weight, max_rows, random.Random(0))
    assert len(rows) == taken and set(rows) <= set(range(n))
    counts = collections.Counter(rows)
    if weight is not None and max_rows is None:  # every row at least int(weight) times, at most once more
        assert {c - int(weight) for c in counts.values()} <= {0, 1} and len(counts) == min(n, taken)


def test_a_source_setting_reaches_only_that_source_and_its_cache(llama: Path, files: dict[str, str]) -> None:
    plain = data(llama, mixed(files))
    told = mixed(files)
    told[1]["settings"]["system_prompt"] = "be brief"
    prompted = data(llama, told)
    a, b = plain.features("validation"), prompted.features("validation")
    sources = plain.raw("validation")[SOURCE_COLUMN]
    for source, x, y in zip(sources, a["input_ids"], b["input_ids"], strict=True):
        assert (x == y) == (source == "alpaca")
    assert "be brief" in prompted.tokenizer.decode(b["input_ids"][-1])


def test_inspect_data_shows_each_source(llama: Path, files: dict[str, str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mix.yaml"
    config.write_text(json.dumps({"data": {"class_path": "lit_ft.tasks.sft.SFTData", "init_args": {
        "sources": mixed(files), "mix_seed": 7, "max_length": 128}}}))
    capsys.readouterr()
    main(["inspect-data", "--model.task", "sft", "--model.backbone", str(llama), "--config", str(config), "--n", "1"])
    out = capsys.readouterr().out
    assert "sources (training rows sampled with data.mix_seed 7):\n" \
           "  alpaca  train 12 (weight 1.5 of 8), validation 2, predict 2\n" \
           "  chat    train 3 (max_rows 3 of 8), validation 2, predict 2\n" in out
    assert "rows: train 15, validation 4, predict 4" in out


def test_preference_pairs_mix_explicit_rows_and_hh_texts_with_their_own_columns(tmp_path: Path, llama: Path) -> None:
    """The preference data module mixes as SFT's does (the mixing is the base's): explicit pairs under other column
    names, and HH-style full texts whose prompt is their shared start; one batch holds pairs of both."""
    from lit_ft.tasks.preference.data import PreferenceData

    explicit = [{"question": f"say {w} twice:", "good": f" {w} {w}", "bad": " mat"} for w in WORDS]
    hh = [{"chosen": f"\n\nHuman: hi {w}\n\nAssistant: hello {w}", "rejected": f"\n\nHuman: hi {w}\n\nAssistant: no"}
          for w in WORDS * 2]
    sources = [
        MixSource(name="explicit", train=write_jsonl(explicit, tmp_path / "explicit.jsonl"), validation_fraction=0.2,
                  weight=2.0, settings={"format": "explicit", "prompt_column": "question", "chosen_column": "good",
                                        "rejected_column": "bad"}),
        MixSource(name="hh", train=write_jsonl(hh, tmp_path / "hh.jsonl"), validation_fraction=0.2, max_rows=5,
                  settings={"format": "implicit"}),
    ]
    dm = PreferenceData(tokenizer=str(llama), max_length=64, mix_seed=3, sources=sources)
    assert per_source(dm, "train") == {"explicit": 8, "hh": 5} and per_source(dm, "validation") == {"explicit": 1,
                                                                                                     "hh": 2}
    features = dm.features("train")
    assert features[ROW] == list(range(13)) and features["id"] == dm.raw("train")["id"]
    prompts = [dm.tokenizer.decode(ids) for ids in features["prompt_ids"]]
    assert all(p.endswith("twice:") for p in prompts[:8]) and all(p.endswith("Assistant:") for p in prompts[8:])
    batch = dm.collate([{k: v for k, v in features[i].items() if k != ROW} for i in (0, 12)])
    assert batch["inputs"]["input_ids"].shape[0] == 4 and batch["id"][1].startswith("hh/")
    assert dm.example_keys(dm.raw("train")[:1])[0].startswith("say ")  # each source's own input columns
    assert data_summary(dm)[1] == "mix (data.mix_seed 3): explicit 8 (weight 2 of 4), hh 5 (max_rows 5 of 8)"
