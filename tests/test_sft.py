"""The `sft` task: rendering and masking, batched generation, metrics by value, recipes, predict, export, W&B."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sft_fixtures import chat_rows, make_causal_lm, pc_rows, write_jsonl, write_standins
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_ft.commands.cli import run
from lit_ft.generation.decoding import extract_code, generate
from lit_ft.io import read_jsonl
from lit_ft.source import DataSource
from lit_ft.tasks.sft import SFTData
from lit_ft.tasks.sft.render import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, FALLBACK_CHAT_TEMPLATE

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.precision",
    "32-true",
    "--trainer.accumulate_grad_batches",
    "1",
]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_causal_lm(tmp_path_factory.mktemp("gpt2"), arch="gpt2")


def data(tmp_path: Path, backbone: Path, rows: list[dict], **kwargs) -> SFTData:
    f = write_jsonl(rows, tmp_path / "rows.jsonl")
    return SFTData(source=DataSource(train=f, validation=f, predict=f), tokenizer=str(backbone), **kwargs)


def trained_text(tok, ids: list[int], labels: list[int]) -> str:
    return tok.decode([t for t, la in zip(ids, labels, strict=True) if la != -100])


def test_chat_labels_only_on_assistant_tokens(tmp_path: Path, llama: Path) -> None:
    dm = data(tmp_path, llama, chat_rows(2), max_length=128)
    row = dm.features("validation")[1]
    tok = dm.tokenizer
    text = tok.apply_chat_template(chat_rows(2)[1]["messages"], tokenize=False)
    # independent spans: each assistant reply and its closing EOS, found in the rendered text
    spans = [(text.index(s), text.index(s) + len(s)) for s in ("it is 2.</s>", "that is 4.</s>")]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert row["input_ids"] == enc["input_ids"]
    for tid, label, (start, _) in zip(row["input_ids"], row["labels"], enc["offset_mapping"], strict=True):
        in_reply = any(a <= start < b for a, b in spans)
        assert label == (tid if in_reply else -100), (tok.decode([tid]), start)
    assert trained_text(tok, row["input_ids"], row["labels"]) == "it is 2.</s>that is 4.</s>"
    assert row["prompt"] == text[: spans[1][0]] and row["prompt"].endswith("<|assistant|>")
    assert row["references"] == ["that is 4."]
    assert tok.decode(row["prompt_ids"]) == row["prompt"]


def test_prompt_completion_appends_eos_and_train_on_prompt(tmp_path: Path, gpt2: Path) -> None:
    row = data(tmp_path, gpt2, pc_rows(4), max_length=64).features("train")[0]
    tok = AutoTokenizer.from_pretrained(gpt2)
    assert row["input_ids"][-1] == tok.eos_token_id and row["labels"][-1] == tok.eos_token_id
    assert trained_text(tok, row["input_ids"], row["labels"]) == " cat cat</s>"
    full = data(tmp_path, gpt2, pc_rows(4), max_length=64, train_on_prompt=True).features("train")[0]
    assert full["labels"] == full["input_ids"] == row["input_ids"]


def test_a_backbone_without_pad_token_pads_with_eos_in_data_and_generation(tmp_path: Path, gpt2: Path) -> None:
    """GPT-2 style tokenizers ship without a pad token: the data module's batches and the task's generation both
    pad with EOS, set up in one place (`lit_ft.backbone.pad_with_eos`)."""
    import shutil

    from lit_ft import LoadOptions
    from lit_ft.tasks.sft.task import SFTTask

    bare = tmp_path / "bare"
    shutil.copytree(gpt2, bare)
    tok = AutoTokenizer.from_pretrained(bare)
    tok.pad_token = None
    tok.save_pretrained(bare)
    assert AutoTokenizer.from_pretrained(bare).pad_token is None
    dm = data(tmp_path, bare, pc_rows(4), max_length=64)
    rows = [dict(r) for r in dm.features("train").select(range(2))]
    rows[0]["input_ids"] = rows[0]["input_ids"][:3]
    rows[0]["attention_mask"] = rows[0]["attention_mask"][:3]
    rows[0]["labels"] = rows[0]["labels"][:3]
    padded = dm.collate(rows)["inputs"]["input_ids"][0, 3:]
    assert len(padded) and (padded == tok.eos_token_id).all()
    task = SFTTask(info={})
    task.build_model(str(bare), LoadOptions())
    assert task.tokenizer.pad_token_id == dm.tokenizer.pad_token_id == tok.eos_token_id
    lit_ft_dir = Path(__file__).resolve().parents[1] / "lit_ft"
    setters = sorted(str(p.relative_to(lit_ft_dir)) for p in lit_ft_dir.rglob("*.py")
                     if ".pad_token = " in p.read_text())
    assert setters == ["backbone.py"]


def test_alpaca_prompt_and_system_prompt(tmp_path: Path, llama: Path) -> None:
    rows = [
        {"instruction": "add", "input": "1 and 2", "output": "3"},
        {"instruction": "say hi", "input": "", "output": "hi"},
    ]
    ds = data(tmp_path, llama, rows, max_length=256).features("validation")
    assert ds[0]["prompt"] == ALPACA_PROMPT.format(instruction="add", input="1 and 2")
    assert ds[1]["prompt"] == ALPACA_PROMPT_NO_INPUT.format(instruction="say hi")
    assert "### Input:" not in ds[1]["prompt"] and ds[1]["references"] == ["hi"]
    chat = data(tmp_path, llama, rows, max_length=256, use_chat_template=True, system_prompt="be kind").features(
        "validation"
    )
    assert chat[0]["prompt"] == "<s><|system|>be kind<|user|>add\n\n1 and 2<|assistant|>"


def test_fallback_chat_template(tmp_path: Path) -> None:
    backbone = make_causal_lm(tmp_path / "plain", chat_template=None)
    dm = data(tmp_path, backbone, chat_rows(1), max_length=128, system_prompt="be brief")
    assert dm.renderer.template == FALLBACK_CHAT_TEMPLATE
    row = dm.features("validation")[0]
    assert row["prompt"] == (
        "### System:\nbe brief\n\n### User:\nwhat is 0 plus one?\n\n### Assistant:\nit is 1.</s>\n\n"
        "### User:\nand twice that?\n\n### Assistant:\n"
    )
    assert trained_text(dm.tokenizer, row["input_ids"], row["labels"]) == "it is 1.</s>\n\nthat is 2.</s>\n\n"


def test_truncation_fails_fast_or_drops_with_counts(tmp_path: Path, llama: Path) -> None:
    rows = pc_rows(4) + [{"prompt": "say " + "cat " * 40, "completion": " cat"}]
    with pytest.raises(ValueError, match=r"row '4' .*no response token.*max_length=20.*drop_untrainable"):
        data(tmp_path, llama, rows, max_length=20).features("train")
    dm = data(tmp_path, llama, rows, max_length=20, drop_untrainable=True)
    assert len(dm.features("train")) == 4
    assert dm.report["train"] == {"examples": 5, "truncated": 0, "dropped": 1}
    cut = data(tmp_path, llama, [{"prompt": "say", "completion": " cat" * 30}], max_length=12)
    assert len(cut.features("train")[0]["input_ids"]) == 12 and cut.report["train"]["truncated"] == 1
    # a blank response would train only the EOS: dropped and counted like the rest
    blank = data(tmp_path, llama, [*pc_rows(4), {"prompt": "say", "completion": " "}], drop_untrainable=True)
    assert len(blank.features("train")) == 4 and blank.report["train"]["dropped"] == 1
    with pytest.raises(ValueError, match=r"every one of the 1 examples in the train split .* was dropped"):
        data(tmp_path, llama, [{"prompt": "say", "completion": ""}], drop_untrainable=True).features("train")


def test_unknown_columns_name_the_settings(tmp_path: Path, llama: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot tell the data shape.*\['answer', 'question'\].*data.format"):
        data(tmp_path, llama, [{"question": "q", "answer": "a"}]).features("train")


def test_validate_metrics_equal_reference_packages(tmp_path: Path, llama: Path) -> None:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu import corpus_bleu
    from torchmetrics.text import Perplexity

    f = write_jsonl(chat_rows(8), tmp_path / "chat.jsonl")
    cli = run(
        [
            "validate",
            "--config",
            str(CONFIGS / "sft_chat.yaml"),
            "--model.backbone",
            str(llama),
            "--data.init_args.source.train",
            f,
            "--data.init_args.source.validation",
            f,
            "--data.init_args.eval_batch_size",
            "3",
            "--model.task_options.generate_examples",
            "5",
            "--model.task_options.max_new_tokens",
            "6",
            "--model.task_options.metrics",
            "[rougeL, bleu, exact_match]",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger",
            "false",
            *QUIET,
        ]
    )
    got = cli.trainer.callback_metrics
    rows = read_jsonl(next((tmp_path / "samples").glob("val_samples_*.jsonl")))
    assert len(rows) == 5 and {r["reference"] for r in rows} == {f"that is {2 * (i + 1)}." for i in range(5)}
    preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    rouge = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)) / 5
    assert got["val/rougeL"].item() == pytest.approx(rouge, abs=1e-6)
    assert got["val/bleu"].item() == pytest.approx(corpus_bleu(preds, [refs]).score, abs=1e-4)
    assert got["val/exact_match"].item() == pytest.approx(sum(p == r for p, r in zip(preds, refs, strict=True)) / 5)
    # perplexity over all 8 rows: torchmetrics on the shifted logits of the same model and tokens
    model, ppl = cli.model.model, Perplexity(ignore_index=-100)
    with torch.no_grad():
        for batch in cli.datamodule.val_dataloader():
            logits = model(**{k: v for k, v in batch["inputs"].items() if k != "labels"}).logits
            ppl.update(logits[:, :-1], batch["inputs"]["labels"][:, 1:])
    assert got["val/perplexity"].item() == pytest.approx(ppl.compute().item(), rel=1e-4)
    # val/loss is the mean over the same trained tokens (batches weighted by them, not by rows)
    assert got["val/loss"].item() == pytest.approx(math.log(ppl.compute().item()), rel=1e-5)


RECIPES = {  # recipe -> stand-in file
    "sft_alpaca.yaml": "alpaca",
    "sft_lima.yaml": "lima",
    "sft_chat.yaml": "chat",
    "sft_customer_support.yaml": "bitext",
    "codegen_mbpp.yaml": "mbpp",
}


def fit_args(recipe: str, backbone: Path, train: str, root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(CONFIGS / recipe),
        "--model.backbone",
        str(backbone),
        "--data.init_args.source.train",
        train,
        "--data.init_args.max_length",
        "256",
        "--model.task_options.max_new_tokens",
        "4",
        "--trainer.max_steps",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.default_root_dir",
        str(root),
        *QUIET,
        *(extra if "--trainer.logger" in extra else ("--trainer.logger", "false", *extra)),
    ]


@pytest.mark.parametrize(
    "recipe",
    [
        r if r in ("sft_chat.yaml", "codegen_mbpp.yaml") else pytest.param(r, marks=pytest.mark.slow)
        for r in sorted(RECIPES)
    ],
)
def test_recipe_runs_on_tiny_standins(recipe: str, tmp_path: Path, llama: Path) -> None:
    files = write_standins(tmp_path / "data")
    cli = run(fit_args(recipe, llama, files[RECIPES[recipe]], tmp_path / "run"))
    assert cli.trainer.global_step == 2
    metrics = cli.trainer.callback_metrics
    assert cli.model.monitor() in (("val/perplexity", "min"), ("val/pass@1", "max"))
    assert {f"val/{n}" for n in cli.model.plugin.metric_names} <= set(metrics) and "val/perplexity" in metrics
    samples = read_jsonl(next((tmp_path / "run" / "samples").glob("val_samples_*.jsonl")))
    assert samples and set(samples[0]) == {"prompt", "reference", "prediction"}


@pytest.mark.slow
def test_codegen_pass_at_1_runs_generated_code(tmp_path: Path, llama: Path) -> None:
    """A tiny model memorises one program; pass@1 equals running its extracted generations in the sandbox."""
    from lit_ft.generation.sandbox import run_tests

    files = write_standins(tmp_path / "data")
    args = fit_args(
        "codegen_mbpp.yaml",
        llama,
        files["mbpp"],
        tmp_path / "run",
        "--trainer.max_steps",
        "40",
        "--trainer.limit_train_batches",
        "40",
        "--trainer.max_epochs",
        "20",
        "--model.learning_rate",
        "0.02",
        "--model.task_options.max_new_tokens",
        "24",
        "--trainer.check_val_every_n_epoch",
        "20",
        "--model.task_options.generate_examples",
        "4",
    )
    cli = run(args)
    rows = read_jsonl(next((tmp_path / "run" / "samples").glob("val_samples_*.jsonl")))
    tests = {json.dumps(r["test_list"]) for r in read_jsonl(files["mbpp"])}
    passed = [
        run_tests(extract_code(r["prediction"]), json.loads(t)).passed
        for r in rows
        for t in tests
        if json.dumps(json.loads(t)) and r["prompt"].endswith(json.loads(t)[0] + "\n")
    ]
    assert len(passed) == len(rows)
    assert cli.trainer.callback_metrics["val/pass@1"].item() == pytest.approx(sum(passed) / len(passed))
    assert sum(passed) >= 1


def test_predict_writes_prompts_and_generations_and_export_loads_in_pipeline(tmp_path: Path, gpt2: Path) -> None:
    from transformers import pipeline

    files = write_standins(tmp_path / "data")
    run(fit_args("sft_chat.yaml", gpt2, files["chat"], tmp_path / "run"))
    predict_file = write_jsonl(
        [{"id": f"q{i}", "messages": [{"role": "user", "content": f"hi {i}"}]} for i in range(3)],
        tmp_path / "predict.jsonl",
    )
    run(
        [
            "predict",
            "--config",
            str(CONFIGS / "sft_chat.yaml"),
            "--model.backbone",
            str(gpt2),
            "--data.init_args.source.train",
            files["chat"],
            "--data.init_args.source.predict",
            predict_file,
            "--model.task_options.max_new_tokens",
            "5",
            "--ckpt_path",
            "best",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--trainer.logger",
            "false",
            *QUIET,
        ]
    )
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert [r["id"] for r in records] == ["q0", "q1", "q2"] and set(records[0]) == {"id", "prompt", "prediction"}
    assert records[1]["prompt"] == "<s><|user|>hi 1<|assistant|>"
    export = tmp_path / "run" / "export"
    generator = pipeline("text-generation", model=str(export))
    tok = AutoTokenizer.from_pretrained(export)
    out = generator(records[1]["prompt"], max_new_tokens=5, do_sample=False, return_full_text=False)
    expected = generate(AutoModelForCausalLM.from_pretrained(export), tok, [tok(records[1]["prompt"])["input_ids"]], 5)
    assert out[0]["generated_text"].strip().startswith(expected[0]) and expected[0] == records[1]["prediction"]


@pytest.mark.slow
def test_wandb_offline_run_holds_the_sample_table(tmp_path: Path, llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lit_ft.wandb_file import history

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    files = write_standins(tmp_path / "data")
    run(
        fit_args(
            "sft_chat.yaml",
            llama,
            files["chat"],
            tmp_path / "run",
            "--trainer.logger",
            "lightning.pytorch.loggers.WandbLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
            "--trainer.logger.project",
            "lit_ft_tests",
        )
    )
    import wandb

    wandb.finish()  # flush the run; `logger.experiment` after Lightning's own finish would start a new run
    run_files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 1, run_files
    run_file = run_files[0]
    # nested history values come back flattened: val/samples/_type, ...; the wandb service may still be writing
    for _ in range(60):
        tables = [row for row in history(run_file) if row.get("val/samples/_type") == "table-file"]
        if tables:
            break
        time.sleep(0.5)
    assert len(tables) == 1 and tables[0]["val/samples/ncols"] == 3
    table = json.loads((run_file.parent / "files" / tables[0]["val/samples/path"]).read_text())
    assert (
        table["columns"] == ["prompt", "reference", "prediction"]
        and len(table["data"]) == tables[0]["val/samples/nrows"]
    )
    local = read_jsonl(next((tmp_path / "run" / "samples").glob("val_samples_*.jsonl")))
    assert table["data"] == [[r["prompt"], r["reference"], r["prediction"]] for r in local]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine the thread hand-offs make each
    small op many times slower (as in test_seq2seq.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_tiny_model_learns_string_reversal(tmp_path: Path, one_thread: None) -> None:
    """Convergence: reversal of 3-6 letter strings to >= 90% exact match on held-out strings (val/exact_match),
    through `lit_ft fit` with a character-level tokenizer (~20 CPU seconds)."""
    import random

    rng = random.Random(0)
    letters = "abcdefgh"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 6))) for _ in range(2200)})
    rng.shuffle(words)
    rows = [{"prompt": f"{w}=", "completion": w[::-1]} for w in words]
    held_out, seen = rows[:64], rows[64:]
    assert not {r["prompt"] for r in held_out} & {r["prompt"] for r in seen}
    train, val = write_jsonl(seen, tmp_path / "train.jsonl"), write_jsonl(held_out, tmp_path / "val.jsonl")
    backbone = make_causal_lm(tmp_path / "model", hidden=64, layers=2, merges=False)
    tok = AutoTokenizer.from_pretrained(backbone)
    assert len(tok("abcdefgh=")["input_ids"]) == 9  # one token per character
    cli = run(
        [
            "fit",
            "--config",
            str(CONFIGS / "sft_chat.yaml"),
            "--model.backbone",
            str(backbone),
            "--data.init_args.format",
            "prompt_completion",
            "--data.init_args.source.train",
            train,
            "--data.init_args.source.validation",
            val,
            "--data.init_args.batch_size",
            "32",
            "--model.learning_rate",
            "0.003",
            "--model.warmup",
            "0.05",
            "--model.schedule",
            "linear",
            "--model.task_options.metrics",
            "[exact_match]",
            "--model.task_options.generate_examples",
            "64",
            "--model.task_options.sample_rows",
            "64",
            "--model.task_options.max_new_tokens",
            "8",
            "--trainer.max_epochs",
            "40",
            "--trainer.check_val_every_n_epoch",
            "40",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--trainer.logger",
            "false",
            "--export.enabled",
            "false",
            *QUIET,
        ]
    )
    score = cli.trainer.callback_metrics["val/exact_match"].item()
    assert score >= 0.9
    # cross-check the metric against the logged predictions of the same validation pass
    (samples,) = (tmp_path / "run" / "samples").glob("val_samples_*.jsonl")
    predicted = read_jsonl(samples)
    expected = {r["prompt"]: r["completion"] for r in held_out}
    assert len(predicted) == 64 and {r["prompt"] for r in predicted} == set(expected)
    assert all(r["reference"] == expected[r["prompt"]] for r in predicted)
    assert sum(r["prediction"] == r["reference"] for r in predicted) / 64 == pytest.approx(score)


REAL_DATA = {
    "sft_alpaca.yaml": "alpaca_first100/alpaca_tiny.json",
    "sft_lima.yaml": "lima/lima.json",
    "sft_chat.yaml": "hf_tests_samples/sft_chat/chat.jsonl",
    "sft_customer_support.yaml": "bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv",
    "codegen_mbpp.yaml": "mbpp/mbpp.jsonl",
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(REAL_DATA))
def test_recipe_on_real_shared_data(recipe: str, tmp_path: Path, llama: Path) -> None:
    from builders import shared_data

    train = str(shared_data(REAL_DATA[recipe]))
    cli = run(
        fit_args(
            recipe,
            llama,
            train,
            tmp_path / "run",
            "--data.init_args.max_length",
            "1024",
            "--data.init_args.drop_untrainable",
            "true",
        )
    )
    report = cli.datamodule.report
    assert cli.trainer.global_step == 2 and report["train"]["examples"] > report["train"]["dropped"]
    assert "val/perplexity" in cli.trainer.callback_metrics


def test_test_validate_and_predict_read_no_training_data(tmp_path: Path, llama: Path) -> None:
    """After a packed fit the training file is gone: `validate`, `test` and `predict` from the best checkpoint read
    only their own split (nothing re-reads, re-tokenizes or re-packs train)."""
    rows = [{"prompt": f"say {w}:", "completion": f" {w} {w}"} for w in ("cat", "mat", "sat", "hat", "bat", "rat")]
    train = write_jsonl(rows * 2, tmp_path / "train.jsonl")
    held = write_jsonl(rows, tmp_path / "held.jsonl")
    sources = ["--data.init_args.source.validation", held, "--data.init_args.source.test", held,
               "--data.init_args.source.predict", held, "--data.init_args.packing", "true",
               "--data.init_args.batch_size", "2", "--model.task_options.generate_examples", "2"]
    args = fit_args("sft_chat.yaml", llama, train, tmp_path / "run", "--data.init_args.format", "prompt_completion",
                    *sources, "--trainer.precision", "32-true")
    assert run(args).trainer.global_step == 2
    Path(train).unlink()
    for verb in ("validate", "test", "predict"):
        cli = run([verb, *args[1:], "--ckpt_path", "best"])
        assert cli.datamodule.report.keys() == {"validation" if verb == "validate" else verb}
    assert len(read_jsonl(tmp_path / "run" / "predictions.jsonl")) == len(rows)
