"""Exports of generative runs decode as `lit_ft predict` did, carry a model card, and `--push_to_hub` uploads them.

One tiny SFT run and one tiny seq2seq run (fit, predict, `lit_ft export`) are shared by the module. Their backbones
ship a `generation_config.json` with sampling on, as many chat models do: the export must still decode greedily,
as lit_ft evaluated and predicted."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import WORDS
from sft_fixtures import make_causal_lm, write_jsonl, write_standins
from test_seq2seq import make_tiny_t5, write_summaries

from lit_ft.commands.cli import main, run
from lit_ft.io import read_jsonl

pytestmark = pytest.mark.usefixtures("single_thread")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COMMON = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--trainer.accelerator", "cpu",
          "--trainer.precision", "32-true"]
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20}


def sampling_backbone(path: Path) -> Path:
    """Give a backbone the sampling defaults a chat model's `generation_config.json` often has."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(path)
    config.update(**SAMPLING)
    config.save_pretrained(path)
    return path


def fit_predict_export(recipe: str, args: list[str], root: Path) -> dict[str, Any]:
    """`lit_ft fit`, `predict --ckpt_path best` and `export RUN --output_dir` with one recipe and overrides."""
    full = ["--config", str(CONFIGS / recipe), *args, "--trainer.default_root_dir", str(root), *COMMON]
    run(["fit", *full, "--trainer.max_steps", "3"])  # exports to <root>/export at its end
    run(["predict", *full, "--ckpt_path", "best"])
    run(["export", str(root), "--output_dir", str(root.parent / "exported")])
    return {"root": root, "export": root.parent / "exported", "records": read_jsonl(root / "predictions.jsonl")}


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("sft_export")
    backbone = sampling_backbone(make_causal_lm(base / "gpt2", arch="gpt2"))
    files = write_standins(base / "data")
    predict = write_jsonl([{"id": f"q{i}", "messages": [{"role": "user", "content": f"what is {i} plus one?"}]}
                           for i in range(3)], base / "predict.jsonl")
    args = ["--model.backbone", str(backbone), "--data.init_args.source.train", files["chat"],
            "--data.init_args.source.predict", predict, "--model.learning_rate", "0.01",
            "--model.task_options.max_new_tokens", "6", "--model.task_options.generate_examples", "2"]
    return fit_predict_export("sft_chat.yaml", args, base / "run")


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("seq2seq_export")
    backbone = sampling_backbone(make_tiny_t5(base / "t5", WORDS))
    train = write_summaries(base / "train.jsonl", 16)
    val = write_summaries(base / "val.jsonl", 4, seed=1)
    args = ["--model.backbone", str(backbone), "--data.init_args.source.hub", "null",
            "--data.init_args.source.train", train, "--data.init_args.source.validation", val,
            "--data.init_args.source.test", "null", "--data.init_args.source.predict", val,
            "--data.init_args.id_column", "fname", "--data.init_args.batch_size", "8",
            "--model.learning_rate", "0.01", "--model.task_options.max_new_tokens", "5",
            "--model.task_options.generate_kwargs", "{num_beams: 2}"]
    return fit_predict_export("summarization_dialogsum.yaml", args, base / "run")


def test_sft_export_in_pipeline_gives_the_predictions(sft_run: dict[str, Any]) -> None:
    """`pipeline("text-generation")` on the export, with no arguments, continues each prompt with the text
    `lit_ft predict` wrote (lit_ft strips the whitespace around it), from the prompt text and from the chat."""
    from transformers import pipeline

    generator = pipeline("text-generation", model=str(sft_run["export"]))
    records = sft_run["records"]
    assert any(r["prediction"] for r in records)  # else the comparison could not tell decoding modes apart
    for record in records:
        (out,) = generator(record["prompt"])
        assert out["generated_text"].startswith(record["prompt"])
        assert out["generated_text"][len(record["prompt"]):].strip() == record["prediction"]
    (chat,) = generator([{"role": "user", "content": "what is 1 plus one?"}])
    assert chat["generated_text"][-1]["role"] == "assistant"
    assert chat["generated_text"][-1]["content"].strip() == records[1]["prediction"]
    config = json.loads((sft_run["export"] / "generation_config.json").read_text())
    assert config["do_sample"] is False and config["max_new_tokens"] == 6
    assert not {"temperature", "top_p", "top_k"} & set(config)  # the backbone's sampling settings are gone


def test_seq2seq_export_generates_the_predictions(seq2seq_run: dict[str, Any]) -> None:
    """Transformers 5 has no text-to-text pipeline: the card's own code (`generate()` with no arguments, the
    data's source prefix) gives the text `lit_ft predict` wrote, beam width and length included."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    with pytest.raises(KeyError, match="text2text-generation has been removed"):
        pipeline("text2text-generation", model=str(seq2seq_run["export"]))
    export, records = seq2seq_run["export"], seq2seq_run["records"]
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(export), AutoTokenizer.from_pretrained(export)
    assert any(r["prediction"] for r in records)  # else the comparison could not tell decoding modes apart
    for record in records:
        ids = model.generate(**tokenizer("summarize: " + record["source"], return_tensors="pt"))
        assert tokenizer.decode(ids[0], skip_special_tokens=True).strip() == record["prediction"]
    config = json.loads((export / "generation_config.json").read_text())
    assert (config["do_sample"], config["num_beams"], config["max_new_tokens"]) == (False, 2, 5)
    card = (seq2seq_run["export"] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", card, re.DOTALL)
    assert "summarize: " in code
    for record in records:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code.replace("Your text here", record["source"]), {})  # noqa: S102 - the card's snippet, as a reader runs it
        assert printed.getvalue().strip() == record["prediction"]


def card_of(export: Path) -> tuple[dict[str, Any], str]:
    text = (export / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_model_card_holds_the_runs_values(sft_run: dict[str, Any], seq2seq_run: dict[str, Any]) -> None:
    """README.md: the Hub's metadata header (base model, task, tags, model-index with the best checkpoint's
    validation metrics, as the run's metrics files hold them) and the settings, decoding and versions; the same
    metrics in the card of the export `fit` writes at its end."""
    from transformers import __version__ as transformers_version

    import lit_ft

    for fitted, tag, task in ((sft_run, "text-generation", "sft"), (seq2seq_run, "text2text-generation", "seq2seq")):
        header, body = card_of(fitted["export"])
        pointer = json.loads((fitted["root"] / "checkpoints" / "best.json").read_text())
        best = fitted["root"] / "checkpoints" / pointer["best"]
        step = int(re.search(r"step=(\d+)", best.name).group(1))
        (record,) = [r for p in (fitted["root"] / "metrics").glob("val_*.json")
                     if (r := json.loads(p.read_text()))["step"] == step][:1]
        assert header["library_name"] == "transformers" and header["pipeline_tag"] == tag
        assert "lit_ft" in header["tags"] and task in header["tags"]
        assert "base_model" not in header  # a local directory is no Hub id
        (result,) = header["model-index"][0]["results"]
        assert result["task"]["type"] == tag
        shown = {m["name"]: m["value"] for m in result["metrics"]}
        assert shown == pytest.approx(record["metrics"]) and pointer["monitor"] in shown
        assert shown[pointer["monitor"]] == pytest.approx(pointer["score"])
        assert f"`{best.name}`" in body and f"step {step}" in body
        assert "| learning_rate | `0.01` |" in body and "| trainer.max_steps | `3` |" in body
        assert f"lit_ft {lit_ft.__version__}" in body and f"transformers {transformers_version}" in body
        assert "greedy decoding" in body or "beam search (2 beams)" in body
        at_fit_end, _ = card_of(fitted["root"] / "export")  # the fit's own export: the same checkpoint
        assert at_fit_end["model-index"][0]["results"] == header["model-index"][0]["results"]
    assert "## How to use" in card_of(sft_run["export"])[1]
    assert 'pipeline("text-generation", model=' in card_of(sft_run["export"])[1]
    manifest = json.loads((sft_run["export"] / "lit_ft.json").read_text())
    assert "README.md" in manifest["files"]  # lit_ft's own: a later export replaces it


def test_push_to_hub_offline_keeps_the_export(sft_run: dict[str, Any], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Offline (the tests run with HF_HUB_OFFLINE=1): the export is written, then one line, exit 2. The card
    names the repo it is meant for."""
    out = tmp_path / "pushed"
    with pytest.raises(SystemExit) as stop:
        main(["export", str(sft_run["root"]), "--output_dir", str(out), "--push_to_hub", "me/tiny-sft"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert err[0].startswith("lit_ft: error: cannot push to the Hub repo me/tiny-sft: huggingface_hub is offline")
    assert f"hf upload me/tiny-sft {out}" in err[0]
    header, body = card_of(out)
    assert header["model-index"][0]["name"] == "tiny-sft" and 'model="me/tiny-sft"' in body
    assert (out / "model.safetensors").is_file()


def test_push_to_hub_reaches_for_the_network_and_reports_one_line(sft_run: dict[str, Any], tmp_path: Path) -> None:
    """A real `lit_ft export --push_to_hub` process online, against an endpoint nobody listens on: huggingface_hub
    makes its request, and the failure is one line, exit 2, with the export kept. A bad repo id is refused
    before anything is written."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: a connection there is refused
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_test",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "pushed"
    done = subprocess.run([sys.executable, "-m", "lit_ft", "export", str(sft_run["root"]), "-o", str(out),
                           "--push_to_hub", "me/tiny-sft"], env=env, capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert err[0].startswith("lit_ft: error: could not push to the Hub repo me/tiny-sft (")
    assert "Connect" in err[0] and f"hf upload me/tiny-sft {out}" in err[0]
    assert done.stdout.splitlines() == [f"lit_ft: exported to {out}"]
    assert (out / "README.md").is_file() and (out / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as stop:
        main(["export", str(sft_run["root"]), "-o", str(tmp_path / "never"), "--push_to_hub", "bad repo"])
    assert stop.value.code == 2 and not (tmp_path / "never").exists()
