"""seq2seq task and lit_ft.generation.text_metrics: metric values against rouge-score / sacrebleu, data layouts,
generation, recipes through the CLI, predict, export, LoRA, and a small convergence run."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import WORDS, shared_data
from helpers import token_cross_entropy

from lit_ft.commands.cli import run
from lit_ft.errors import UserError
from lit_ft.generation.text_metrics import sentence_lines, text_metrics
from lit_ft.io import read_jsonl
from lit_ft.tasks.seq2seq import Seq2SeqData, load_parallel_text

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LETTERS = list("abcdefgh")
ROUGE = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def make_tiny_t5(out: Path, words: list[str], d_model: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised T5 (hidden `d_model`) with a word-level tokenizer, saved like a hub model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out)
    config = T5Config(
        vocab_size=len(vocab), d_model=d_model, d_kv=d_model // 4, d_ff=2 * d_model, num_layers=layers, num_heads=4,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(out)
    return out


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), [*WORDS, *LETTERS])


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_summaries(path: Path, n: int, seed: int = 0, multi_ref: bool = False) -> str:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"fname": f"d{i}", "dialogue": _sentence(rng, rng.randint(6, 14))}
        if multi_ref:
            row.update({f"summary{k}": _sentence(rng, rng.randint(2, 5)) for k in (1, 2, 3)})
        else:
            row["summary"] = _sentence(rng, rng.randint(2, 5))
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_parallel(stem: Path, n: int, seed: int = 0, target: bool = True) -> str:
    rng = random.Random(seed)
    src = [_sentence(rng, rng.randint(3, 8)) for _ in range(n)]
    stem.with_name(stem.name + ".en").write_text("\n".join(src) + "\n")
    if target:
        stem.with_name(stem.name + ".de").write_text("\n".join(" ".join(reversed(s.split())) for s in src) + "\n")
    return str(stem)


def cli_args(config: str, tiny: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config", config, "--model.backbone", str(tiny), "--data.init_args.source.hub", "null",
        *extra, "--trainer.logger", "false", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
    ]


# ---- metrics -------------------------------------------------------------------------------------
def _rouge_reference(preds: list[str], refs: list[list[str]], key: str) -> float:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer([key], use_stemmer=True)
    prep = sentence_lines if key == "rougeLsum" else str
    pairs = zip(preds, refs, strict=True)
    return statistics.mean(scorer.score_multi([prep(r) for r in rs], prep(p))[key].fmeasure for p, rs in pairs)


def _metric_pairs() -> tuple[list[str], list[str], list[str], list[str]]:
    dialogs = read_jsonl(shared_data("dialogsum") / "dialogsum.dev.jsonl")[:12]
    summaries = [d["summary"] for d in dialogs]
    # predictions: the dialogue's opening, or a neighbour's summary (partial overlap), or the summary itself
    sum_preds = [s if i % 4 == 0 else dialogs[(i + 1) % 12]["summary"] if i % 4 == 1 else d["dialogue"][:200]
                 for i, (s, d) in enumerate(zip(summaries, dialogs, strict=True))]
    german = (shared_data("multi30k_en_de") / "val.de").read_text().splitlines()[:30]
    de_preds = [g if i % 3 == 0 else " ".join(g.split()[:-2] + german[i - 1].split()[:2]) for i, g in enumerate(german)]
    return sum_preds, summaries, de_preds, german


def test_text_metrics_equal_reference_packages() -> None:
    import sacrebleu

    sum_preds, summaries, de_preds, german = _metric_pairs()
    metrics = text_metrics([*ROUGE, "bleu", "chrf", "exact_match"])
    for start in range(0, 12, 5):  # several updates, as evaluation batches do
        metrics.update(sum_preds[start:start + 5], summaries[start:start + 5])
    values = metrics.compute()
    for key in ROUGE:
        assert values[key].item() == pytest.approx(_rouge_reference(sum_preds, [[s] for s in summaries], key), abs=1e-6)
    assert values["exact_match"].item() == pytest.approx(3 / 12)
    assert values["bleu"].item() == pytest.approx(sacrebleu.corpus_bleu(sum_preds, [summaries]).score, abs=1e-4)
    metrics = text_metrics(["bleu", "chrf", "exact_match"])
    metrics.update(de_preds[:17], german[:17])
    metrics.update(de_preds[17:], german[17:])
    values = metrics.compute()
    assert values["bleu"].item() == pytest.approx(sacrebleu.corpus_bleu(de_preds, [german]).score, abs=1e-4)
    assert values["chrf"].item() == pytest.approx(sacrebleu.corpus_chrf(de_preds, [german]).score, abs=1e-4)
    assert 20 < values["bleu"].item() < 90 and values["exact_match"].item() == pytest.approx(10 / 30)


def test_text_metrics_multi_reference_and_sentence_split() -> None:
    import sacrebleu

    preds = ["The cat sat on the mat. It was happy!", "A dog ran in the park.", "Hello there"]
    refs = [["The cat is on the mat. It looked happy.", "A cat sat."], ["The dog runs in a park.", "Dogs run."],
            ["Hello there", "Hi"]]
    metrics = text_metrics([*ROUGE, "bleu", "chrf", "exact_match"])
    metrics.update(preds, refs)
    values = metrics.compute()
    assert sentence_lines(preds[0]) == "The cat sat on the mat.\nIt was happy!"
    for key in ROUGE:
        assert values[key].item() == pytest.approx(_rouge_reference(preds, refs, key), abs=1e-6)
    streams = [list(s) for s in zip(*refs, strict=True)]
    assert values["bleu"].item() == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score, abs=1e-4)
    assert values["chrf"].item() == pytest.approx(sacrebleu.corpus_chrf(preds, streams).score, abs=1e-4)
    assert values["exact_match"].item() == pytest.approx(1 / 3)


def test_text_metrics_keep_metrics_with_equal_first_states_apart() -> None:
    metrics = text_metrics(["rouge1", "rougeL"])
    metrics.update(["a b c"], ["a b c"])  # both 1.0: a merged compute group would tie them from now on
    metrics.update(["a b c d"], ["d c b a"])
    values = metrics.compute()
    assert values["rouge1"].item() == pytest.approx(1.0)
    assert values["rougeL"].item() == pytest.approx((1.0 + 0.25) / 2)
    with pytest.raises(ValueError, match="unknown text metric 'meteor'"):
        text_metrics(["meteor"])


# ---- data -----------------------------------------------------------------------------------------
def test_parallel_text_files_and_translation_rows(tmp_path: Path) -> None:
    stem = write_parallel(tmp_path / "val", 5)
    ds = load_parallel_text(stem, "en", "de")
    first_en = (tmp_path / "val.en").read_text().splitlines()[0]
    assert len(ds) == 5 and ds[0]["translation"]["en"] == first_en
    assert ds[0]["translation"]["de"] == " ".join(reversed(first_en.split()))
    (tmp_path / "val.de").write_text("only one line\n")
    with pytest.raises(ValueError, match="same number of lines"):
        load_parallel_text(stem, "en", "de")
    with pytest.raises(UserError, match="nor the stem of parallel text files"):
        load_parallel_text(str(tmp_path / "missing"), "en", "de")
    only_source = load_parallel_text(write_parallel(tmp_path / "new", 3, target=False), "en", "de")
    assert set(only_source[0]["translation"]) == {"en"}


def test_encode_prefix_targets_and_references(tiny_t5: Path, tmp_path: Path) -> None:
    test_file = write_summaries(tmp_path / "test.jsonl", 4, multi_ref=True)
    data = Seq2SeqData(
        source_column="dialogue", target_column="summary", reference_columns=["summary1", "summary2", "summary3"],
        source_prefix="summarize ", tokenizer=str(tiny_t5), max_target_length=3, id_column="fname",
    )
    data.source.test = test_file
    row = data.features("test")[0]
    raw = data.raw("test")[0]
    assert row["id"] == "d0" and row["prompt"] == raw["dialogue"]
    assert row["input_ids"] == data.tokenizer("summarize " + raw["dialogue"])["input_ids"]
    assert row["input_ids"][0] == data.tokenizer.convert_tokens_to_ids("summarize")
    assert row["references"] == [raw["summary1"], raw["summary2"], raw["summary3"]]
    assert row["labels"] == data.tokenizer(text_target=raw["summary1"], truncation=True, max_length=3)["input_ids"]
    data.source.test, data.reference_columns = test_file, None
    data._raw.clear()
    data._features.clear()
    with pytest.raises(UserError, match="target_column 'summary' not found"):
        data.features("test")


# ---- generation -----------------------------------------------------------------------------------
# ---- recipes through the CLI ------------------------------------------------------------------------
def test_summarization_recipe_fit_test_predict_export(tiny_t5: Path, tmp_path: Path) -> None:
    from rouge_score.rouge_scorer import RougeScorer
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    train = write_summaries(tmp_path / "train.jsonl", 16)
    test = write_summaries(tmp_path / "test.jsonl", 6, seed=1, multi_ref=True)
    files = ["--data.init_args.source.train", train, "--data.init_args.source.validation", test,
             "--data.init_args.source.test", test, "--data.init_args.source.predict", test,
             "--data.init_args.id_column", "fname", "--data.init_args.batch_size", "8"]
    args = cli_args(str(CONFIGS / "summarization_dialogsum.yaml"), tiny_t5, tmp_path / "run", *files)
    cli = run(["fit", *args, "--trainer.max_steps", "2"])
    assert cli is not None and cli.trainer.global_step == 2
    assert {f"val/{k}" for k in ROUGE} | {"val/loss"} <= set(cli.trainer.callback_metrics)
    samples = sorted((tmp_path / "run" / "samples").glob("val_samples_*.jsonl"))
    assert samples and set(read_jsonl(samples[-1])[0]) == {"source", "reference", "prediction"}
    tested = run(["test", *args, "--ckpt_path", "best"])
    predicted = run(["predict", *args, "--ckpt_path", "best"])
    assert tested is not None and predicted is not None
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert [r["id"] for r in records] == [f"d{i}" for i in range(6)]
    assert set(records[0]) == {"id", "source", "reference", "prediction"} and len(records[0]["reference"]) == 3
    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    expected = statistics.mean(scorer.score_multi(r["reference"], r["prediction"])["rougeL"].fmeasure for r in records)
    assert tested.trainer.callback_metrics["test/rougeL"].item() == pytest.approx(expected, abs=1e-6)
    export = tmp_path / "run" / "export"
    assert json.loads((export / "lit_ft.json").read_text())["pipeline_tag"] == "text2text-generation"
    model, tok = AutoModelForSeq2SeqLM.from_pretrained(export), AutoTokenizer.from_pretrained(export)
    assert model.generation_config.max_new_tokens == 64
    ids = model.generate(**tok(["summarize: " + records[0]["source"]], return_tensors="pt"))
    assert tok.decode(ids[0], skip_special_tokens=True).strip() == records[0]["prediction"]


def test_translation_recipe_on_parallel_files_with_lora(tiny_t5: Path, tmp_path: Path) -> None:
    import sacrebleu
    from transformers import AutoModelForSeq2SeqLM

    files = ["--data.init_args.source.train", write_parallel(tmp_path / "train", 16),
             "--data.init_args.source.validation", write_parallel(tmp_path / "val", 6, seed=1),
             "--data.init_args.source.predict", str(tmp_path / "val"), "--data.init_args.source.test", "null",
             "--data.init_args.batch_size", "8"]
    lora = ["--model.lora.r", "4", "--model.lora.target_modules", "[q, v]"]
    args = cli_args(str(CONFIGS / "translation_multi30k.yaml"), tiny_t5, tmp_path / "run", *files, *lora)
    cli = run(["fit", *args, "--trainer.max_steps", "2"])
    assert cli is not None and cli.trainer.global_step == 2
    assert cli.model.monitor() == ("val/bleu", "max")
    assert {"val/bleu", "val/chrf"} <= set(cli.trainer.callback_metrics)
    # adapters only: q and v of 6 attention blocks (2 encoder self, 2 decoder self + 2 cross), r 4, in + out 32
    assert sum(p.numel() for p in cli.model.parameters() if p.requires_grad) == 6 * 2 * 4 * (32 + 32)
    val_bleu = cli.trainer.callback_metrics["val/bleu"].item()
    predicted = run(["predict", *args, "--ckpt_path", "best"])
    assert predicted is not None
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert len(records) == 6 and records[0]["reference"] == " ".join(reversed(records[0]["source"].split()))
    bleu = sacrebleu.corpus_bleu([r["prediction"] for r in records], [[r["reference"] for r in records]]).score
    assert val_bleu == pytest.approx(bleu, abs=1e-4)
    sources_only = write_parallel(tmp_path / "new", 3, seed=2, target=False)
    assert run(["predict", *args, "--ckpt_path", "best", "--data.init_args.source.predict", sources_only]) is not None
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert len(records) == 3 and set(records[0]) == {"id", "source", "prediction"}
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "run" / "export")
    assert type(merged).__name__ == "T5ForConditionalGeneration"
    assert not any("lora" in k for k in merged.state_dict())


# ---- convergence ----------------------------------------------------------------------------------
CIPHER = dict(zip(LETTERS, "cdefghab", strict=True))


def write_cipher(path: Path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = [rng.choice(LETTERS) for _ in range(rng.randint(3, 6))]
        rows.append({"source": " ".join(word), "target": " ".join(CIPHER[c] for c in word)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.slow
def test_converges_on_a_letter_cipher(tmp_path: Path) -> None:
    tiny = make_tiny_t5(tmp_path / "t5", LETTERS, d_model=64)
    train, val = write_cipher(tmp_path / "train.jsonl", 2048, 0), write_cipher(tmp_path / "val.jsonl", 64, 1)
    cli = run([
        "fit", "--model.task", "seq2seq", "--model.backbone", str(tiny),
        "--model.learning_rate", "3e-3", "--model.warmup", "0.1",
        "--model.task_options", '{"metrics": ["exact_match", "bleu"], "monitor": "exact_match", "max_new_tokens": 8}',
        "--data.class_path", "lit_ft.tasks.seq2seq.Seq2SeqData", "--data.init_args.source.train", train,
        "--data.init_args.source.validation", val, "--data.init_args.batch_size", "32",
        "--trainer.max_epochs", "20", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
        "--trainer.check_val_every_n_epoch", "10",
        "--export.enabled", "false",
    ])
    assert cli is not None
    assert cli.trainer.callback_metrics["val/exact_match"].item() >= 0.9


# ---- real data through the documented local overrides -------------------------------------------------
@pytest.mark.slow
def test_recipes_on_shared_data(tiny_t5: Path, tmp_path: Path) -> None:
    dialogsum, multi30k = shared_data("dialogsum"), shared_data("multi30k_en_de")
    summ = cli_args(str(CONFIGS / "summarization_dialogsum.yaml"), tiny_t5, tmp_path / "summ",
                    "--data.source.train", str(dialogsum / "dialogsum.dev.jsonl"), "--data.source.validation", "null",
                    "--data.source.test", str(dialogsum / "dialogsum.test.jsonl"), "--data.id_column", "fname")
    short = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2"]
    cli = run(["fit", *summ, *short])
    assert cli is not None and cli.datamodule.features("train").num_rows == 450
    tested = run(["test", *summ, "--ckpt_path", "best", "--trainer.limit_test_batches", "2"])
    assert tested is not None and 0 <= tested.trainer.callback_metrics["test/rougeLsum"].item() <= 1
    assert len(tested.datamodule.features("test")[0]["references"]) == 3
    trans = cli_args(str(CONFIGS / "translation_multi30k.yaml"), tiny_t5, tmp_path / "trans",
                     "--data.source.train", str(multi30k / "train_first10000"),
                     "--data.source.validation", str(multi30k / "val"), "--data.source.test", "null")
    cli = run(["fit", *trans, *short])
    assert cli is not None and cli.datamodule.raw("validation")[0]["translation"]["de"].startswith("Eine Gruppe")
    assert cli.datamodule.features("train").num_rows == 10000 and "val/bleu" in cli.trainer.callback_metrics


# ---- samples of the right epoch; decoding options changed at test time ------------------------------------
def _generate(model_dir: Path | None, module: Any, batch: dict[str, Any]) -> list[str]:
    from transformers import AutoModelForSeq2SeqLM

    model = module.model if model_dir is None else AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    model.eval()
    with torch.no_grad():
        return module.plugin.generate(model, batch["prompt_ids"])


def test_first_epoch_samples_come_from_the_trained_model(tiny_t5: Path, tmp_path: Path) -> None:
    train = write_summaries(tmp_path / "train.jsonl", 16)
    val = write_summaries(tmp_path / "val.jsonl", 4, seed=1)
    files = ["--data.init_args.source.train", train, "--data.init_args.source.validation", val,
             "--data.init_args.source.test", val, "--data.init_args.id_column", "fname",
             "--data.init_args.batch_size", "4", "--model.learning_rate", "1e-2", "--model.warmup", "0"]
    args = cli_args(str(CONFIGS / "summarization_dialogsum.yaml"), tiny_t5, tmp_path / "run", *files)
    # the sanity check validates the untrained model first; then one epoch of 4 steps, validated at its end
    fitted = run(["fit", *args, "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "1",
                  "--export.enabled", "false"])
    assert fitted is not None and fitted.trainer.global_step == 4
    tables = sorted((tmp_path / "run" / "samples").glob("val_samples_*.jsonl"))
    assert [t.name for t in tables] == ["val_samples_step4.jsonl"]
    shown = [r["prediction"] for r in read_jsonl(tables[0])]
    batch = next(iter(fitted.datamodule.val_dataloader()))
    trained, untrained = _generate(None, fitted.model, batch), _generate(tiny_t5, fitted.model, batch)
    assert trained != untrained  # else the check below could not tell the two apart
    assert shown == trained

    # decoding options given at test time apply over the checkpoint's, key by key (the recipe's others stay)
    tested = run(["test", *args, "--ckpt_path", "best", "--model.task_options.generate_kwargs", "{num_beams: 3}",
                  "--model.task_options.max_new_tokens", "2"])
    assert tested is not None
    options = tested.model.hparams["task_options"]
    assert options == {"metrics": ROUGE, "monitor": "rougeL", "generate_kwargs": {"num_beams": 3}, "max_new_tokens": 2}
    assert (tested.model.plugin.generate_kwargs, tested.model.plugin.max_new_tokens) == ({"num_beams": 3}, 2)
    tables = sorted((tmp_path / "run" / "samples").glob("test_samples_*.jsonl"))
    assert tables and all(len(r["prediction"].split()) <= 2 for r in read_jsonl(tables[-1]))


def test_val_loss_is_the_mean_over_target_tokens_whatever_the_batching(tiny_t5: Path, tmp_path: Path) -> None:
    """`val/loss` weighs each batch by its target tokens: eval batches of 1 and of 4 rows give the same value, the
    cross-entropy over every target token of the split computed here from the logits."""
    data = write_summaries(tmp_path / "val.jsonl", 7, seed=2)
    losses = {}
    for size in (1, 4):
        files = ["--data.init_args.source.train", data, "--data.init_args.source.validation", data,
                 "--data.init_args.source.test", "null", "--data.init_args.id_column", "fname",
                 "--data.init_args.eval_batch_size", str(size),
                 "--model.task_options.generate_examples", "1", "--model.task_options.max_new_tokens", "2"]
        cli = run(["validate", *cli_args(str(CONFIGS / "summarization_dialogsum.yaml"), tiny_t5, tmp_path / f"b{size}",
                                         *files)])
        assert cli is not None
        losses[size] = cli.trainer.callback_metrics["val/loss"].item()
    expected = token_cross_entropy(cli)
    assert losses[1] == pytest.approx(expected, rel=1e-5) and losses[4] == pytest.approx(expected, rel=1e-5)
