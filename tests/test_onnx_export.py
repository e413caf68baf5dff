"""`lit_ft export --format onnx`: onnxruntime computes what PyTorch computes on every test row, for every task that
declares ONNX outputs; unsupported tasks, a failed check and missing packages stop in one line with nothing written."""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from builders import WORDS, write_sentiment_csvs
from helpers import cli, tiny_args
from test_question_answering import SENTENCES, nested, row
from test_seq2seq import cli_args, make_tiny_t5, write_summaries
from test_token_classification import write_conll
from transformers import AutoConfig, AutoTokenizer

from lit_ft.backbone import load_tokenizer
from lit_ft.commands.cli import LitFtCLI, main
from lit_ft.training.checkpoint import find_checkpoint
from lit_ft.training.export import load_checkpoint_module

QUICKSTART = "configs/quickstart.yaml"
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
TOLERANCE = 1e-4

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- helpers -------------------------------------------------------------------------------------------------
def export(run_dir: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """`lit_ft export RUN --output_dir OUT --format onnx` in-process; its output line."""
    capsys.readouterr()
    main(["export", str(run_dir), "--output_dir", str(out), "--format", "onnx", *extra])
    return capsys.readouterr().out.strip()


def assert_onnx_equals_pytorch(out: Path, fitted: LitFtCLI, outputs: list[str]) -> float:
    """Every row of the test split, in the data module's padded batches, through onnxruntime and through the
    PyTorch model of the run's best checkpoint (the one exported)."""
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert [o.name for o in session.get_outputs()] == outputs
    assert all(i.shape == ["batch", "sequence"] for i in session.get_inputs())
    root = fitted.trainer.default_root_dir
    model = load_checkpoint_module(find_checkpoint(str(root))).model.eval()
    worst, rows, padded = 0.0, 0, False
    for batch in fitted.datamodule.test_dataloader():
        inputs = batch["inputs"]
        got = session.run(outputs, {n: inputs[n].numpy() for n in names})
        with torch.no_grad():
            expected = model(**{n: inputs[n] for n in names})
        worst = max([worst, *(float(np.abs(g - expected[o].numpy()).max()) for g, o in zip(got, outputs, strict=True))])
        rows += len(batch["id"])
        padded |= bool((inputs["attention_mask"] == 0).any())
    assert rows == len(fitted.datamodule.features("test")) and padded
    assert worst <= TOLERANCE
    return worst


def assert_self_describing(out: Path, fitted: LitFtCLI, text: str) -> None:
    """Label names in config.json, the backbone's tokenizer, lit_ft.json naming the graph's inputs and outputs."""
    info = fitted.model.hparams["info"]
    config = AutoConfig.from_pretrained(out)
    if "label_names" in info:
        assert [config.id2label[i] for i in range(config.num_labels)] == info["label_names"]
    backbone = load_tokenizer(fitted.model.hparams["backbone"])
    assert AutoTokenizer.from_pretrained(out)(text)["input_ids"] == backbone(text)["input_ids"]
    manifest = json.loads((out / "lit_ft.json").read_text())
    assert manifest["format"] == "onnx" and manifest["info"] == info
    assert not (out / "model.safetensors").exists()


def write_csv(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return str(path)


def scored_files(out: Path, problem_type: str) -> dict[str, str]:
    """Multi-label ('a,b' names) or regression (scores) rows of the tiny vocabulary."""
    rng = random.Random(0)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", 32), ("validation", 8), ("test", 21)):
        texts = [" ".join(rng.sample(WORDS, rng.randint(2, 12))) for _ in range(n)]
        if problem_type == "multi_label":
            labels = [",".join(t for t in ("music", "story", "fun") if t in text) or "other" for text in texts]
        else:
            labels = [f"{sum(w in text for w in ('good', 'great', 'fun')) + rng.random():.3f}" for text in texts]
        files[split] = write_csv(out / f"{split}.csv", list(zip(texts, labels, strict=True)))
    return files


# ---- classification: single-label, multi-label, regression (a LoRA run: the merged model is exported) --------
@pytest.fixture(scope="module")
def classification(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[LitFtCLI, Path]]:
    """A 2-step run per problem type, fitted when a test first asks for it."""
    runs: dict[str, tuple[LitFtCLI, Path]] = {}

    def fitted(problem: str) -> tuple[LitFtCLI, Path]:
        if problem not in runs:
            root = tmp_path_factory.mktemp(problem)
            data = root / "data"
            files = write_sentiment_csvs(data) if problem == "single_label" else scored_files(data, problem)
            extra = ["--data.init_args.problem_type", problem, "--data.init_args.batch_size", "8"]
            if problem == "regression":
                extra += ["--model.lora.r", "4", "--model.learning_rate", "1e-2"]
            run = cli("fit", "--config", QUICKSTART, *tiny_args(root / "run", tiny_bert, files), *extra,
                      "--trainer.max_steps", "2", "--export.enabled", "false")
            runs[problem] = run, root / "run"
        return runs[problem]

    return fitted


@pytest.mark.parametrize("problem", ["single_label", "multi_label", "regression"])
def test_classification_onnx_equals_pytorch(problem: str, classification: Callable[[str], tuple[LitFtCLI, Path]],
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fitted, run_dir = classification(problem)
    out = tmp_path / "my_model_onnx"
    line = export(run_dir, out, capsys)
    assert line.startswith(f"lit_ft: exported to {out / 'model.onnx'} (inputs input_ids, token_type_ids, "
                           "attention_mask; outputs logits); onnxruntime vs PyTorch on 4 inputs: max abs diff ")
    assert float(line.rsplit(" ", 1)[1]) <= TOLERANCE
    assert_onnx_equals_pytorch(out, fitted, ["logits"])
    assert_self_describing(out, fitted, "the film was good")
    if fitted.model.hparams["lora"] is not None:  # the adapter trained, so merging it changes the weights
        assert any(p.abs().sum() > 0 for n, p in fitted.model.model.named_parameters() if "lora_B" in n)
    if problem == "single_label":
        monkeypatch.chdir(tmp_path)
        assert_documented_snippet_predicts_like_pytorch(run_dir, capsys)


def assert_documented_snippet_predicts_like_pytorch(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/export.md's onnxruntime example, run on `my_model_onnx`, prints PyTorch's label for each text."""
    snippet = (ROOT / "docs" / "export.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    capsys.readouterr()
    exec(compile(snippet, "docs/export.md", "exec"), {})
    printed = [line.split(" ", 1) for line in capsys.readouterr().out.splitlines()]
    module = load_checkpoint_module(find_checkpoint(str(run_dir)))
    tokenizer = load_tokenizer(module.hparams["backbone"])
    with torch.no_grad():
        logits = module.model.eval()(**tokenizer([t for _, t in printed], padding=True, return_tensors="pt")).logits
    assert len(printed) == 2 and [label for label, _ in printed] == [
        module.hparams["info"]["label_names"][i] for i in logits.argmax(-1).tolist()]


# ---- token classification and extractive QA ------------------------------------------------------------------
def test_token_classification_onnx_equals_pytorch(tagger_bert: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    train, test = write_conll(tmp_path / "train.conll", 40, 0), write_conll(tmp_path / "test.conll", 19, 1)
    fitted = cli("fit", "--config", CONFIGS / "ner_conll2003.yaml", "--model.backbone", tagger_bert,
                 "--data.init_args.source.hub", "null", "--data.init_args.source.train", train,
                 "--data.init_args.source.validation", test, "--data.init_args.source.test", test,
                 "--data.init_args.source.predict", "null", "--data.init_args.tag_scheme", "IOB1",
                 "--data.init_args.batch_size", "8", "--trainer.max_steps", "2",
                 "--trainer.default_root_dir", tmp_path / "run", "--export.enabled", "false", *QUIET)
    assert "outputs logits);" in export(tmp_path / "run", tmp_path / "onnx", capsys)
    assert_onnx_equals_pytorch(tmp_path / "onnx", fitted, ["logits"])
    assert_self_describing(tmp_path / "onnx", fitted, "john visited paris")


def test_question_answering_onnx_equals_pytorch(tiny_bert: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rows = [row(i, f"{s} and {SENTENCES[(i + 1) % 5]}", s.split()[i % 3], "who was it")
            for i, s in enumerate(SENTENCES * 3)]
    (tmp_path / "squad.json").write_text(json.dumps(nested(rows)))
    data = str(tmp_path / "squad.json")
    fitted = cli("fit", "--config", CONFIGS / "qa_squad.yaml", "--model.backbone", tiny_bert,
                 "--data.init_args.source.hub", "null", "--data.init_args.source.train", data,
                 "--data.init_args.source.validation", data, "--data.init_args.source.test", data,
                 "--data.init_args.max_length", "20", "--data.init_args.stride", "6",
                 "--data.init_args.batch_size", "8", "--trainer.max_steps", "2",
                 "--trainer.default_root_dir", tmp_path / "run", "--export.enabled", "false", *QUIET)
    assert "outputs start_logits, end_logits);" in export(tmp_path / "run", tmp_path / "onnx", capsys)
    assert len(fitted.datamodule.features("test")) > len(rows)  # long contexts: several windows per question
    assert_onnx_equals_pytorch(tmp_path / "onnx", fitted, ["start_logits", "end_logits"])
    assert_self_describing(tmp_path / "onnx", fitted, "who was it")


# ---- what is refused, and what a failure leaves ---------------------------------------------------------------
def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_generation_task_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t5 = make_tiny_t5(tmp_path / "t5", WORDS)
    data = write_summaries(tmp_path / "d.jsonl", 4)
    files = ["--data.init_args.source.train", data, "--data.init_args.source.validation", data,
             "--data.init_args.source.test", "null", "--data.init_args.source.predict", "null",
             "--data.init_args.id_column", "fname"]
    cli("fit", *cli_args(str(CONFIGS / "summarization_dialogsum.yaml"), t5, tmp_path / "run", *files),
        "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--export.enabled", "false")
    err = one_line_error(["export", str(tmp_path / "run"), "-o", str(tmp_path / "onnx"), "--format", "onnx"], capsys)
    # tasks registered by plugins earlier in the same process (scaffolded ones declare onnx_outputs) are listed too
    match = re.fullmatch(r"lit_ft: error: task 'seq2seq' cannot be exported to ONNX; tasks that can: (.*) \(their "
                         r"Task.onnx_outputs name the model outputs to export\)\. Use --format hf for 'seq2seq'", err)
    assert match is not None, err
    listed = match.group(1).split(", ")
    assert {"classification", "question_answering", "token_classification"} <= set(listed)
    assert not {"seq2seq", "sft"} & set(listed) and listed == sorted(listed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "run", "t5"]


def test_failed_check_keeps_the_previous_export_and_leaves_no_temporaries(
    classification: Callable[[str], tuple[LitFtCLI, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_dir = classification("single_label")
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "previous.txt").write_text("kept")
    (out / "lit_ft.json").write_text('{"kind": "export", "files": ["previous.txt"]}')  # an earlier export's file
    err = one_line_error(["export", str(run_dir), "-o", str(out), "--format", "onnx", "--atol", "0"], capsys)
    assert err.startswith("lit_ft: error: the ONNX export of bert disagrees with PyTorch: outputs differ by up to ")
    assert err.endswith("(more than --atol 0); nothing was written. Use --format hf")
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]
    assert sorted(p.name for p in out.iterdir()) == ["lit_ft.json", "previous.txt"]


def test_missing_packages_and_adapter_only_are_refused(
    classification: Callable[[str], tuple[LitFtCLI, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run_dir = classification("single_label")
    argv = ["export", str(run_dir), "-o", str(tmp_path / "onnx"), "--format", "onnx"]
    err = one_line_error([*argv, "--adapter_only"], capsys)
    assert err.startswith("lit_ft: error: --adapter_only writes a LoRA adapter for Transformers")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets where it is missing
    err = one_line_error(argv, capsys)
    assert err == ("lit_ft: error: --format onnx needs the package 'onnxruntime', which is not installed: "
                   "pip install 'lit_ft[onnx]'")
    assert list(tmp_path.iterdir()) == []


# ---- the real packaged MiniLM -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quickstart_minilm_onnx_equals_pytorch_on_its_test_split(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fitted = cli("fit", "--config", QUICKSTART, "--trainer.default_root_dir", tmp_path / "run",
                 "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--export.enabled", "false",
                 *QUIET)
    line = export(tmp_path / "run", tmp_path / "onnx", capsys)
    assert float(line.rsplit(" ", 1)[1]) <= TOLERANCE
    worst = assert_onnx_equals_pytorch(tmp_path / "onnx", fitted, ["logits"])
    assert_self_describing(tmp_path / "onnx", fitted, "What a wonderful film!")
    assert AutoConfig.from_pretrained(tmp_path / "onnx").id2label == {0: "negative", 1: "positive"}
    print(f"MiniLM: max abs diff over the 100 test rows {worst:.2g}")
