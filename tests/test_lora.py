"""LoRA (the shared `model.lora` hook): default targets, trainable weights, adapter-only checkpoints, export, test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sft_fixtures import chat_rows, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_ft.commands.cli import run
from lit_ft.generation.decoding import generate
from lit_ft.lora import LoraSettings, apply_lora, default_targets
from lit_ft.training.export import export_model, load_checkpoint_module

pytest.importorskip("peft")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = [
    "--trainer.logger",
    "false",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.precision",
    "32-true",
    "--trainer.accumulate_grad_batches",
    "1",
]


def test_default_targets_per_architecture(llama: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(llama)
    assert default_targets(model) == ["q_proj", "v_proj"]
    model.config.model_type = "not_known_to_peft"
    assert default_targets(model) == "all-linear"
    wrapped = apply_lora(model, LoraSettings(r=2), "CAUSAL_LM")
    adapted = {n.split(".")[-1] for n, _ in wrapped.named_modules() if hasattr(_, "lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # not lm_head


@pytest.fixture(scope="module")
def lora_run(llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, str]:
    root = tmp_path_factory.mktemp("lora_run")
    f = write_jsonl(chat_rows(8), root / "chat.jsonl")
    cli = run(
        [
            "fit",
            "--config",
            str(CONFIGS / "sft_chat.yaml"),
            "--model.backbone",
            str(llama),
            "--data.init_args.source.train",
            f,
            "--data.init_args.source.validation",
            f,
            "--model.lora.r",
            "4",
            "--model.lora.alpha",
            "8",
            "--model.learning_rate",
            "0.05",
            "--model.task_options.max_new_tokens",
            "6",
            "--model.task_options.generate_examples",
            "4",
            "--trainer.max_steps",
            "4",
            "--trainer.max_epochs",
            "4",
            "--trainer.default_root_dir",
            str(root),
            *QUIET,
        ]
    )
    return cli, root, f


def test_only_adapter_weights_train_and_are_checkpointed(lora_run: tuple) -> None:
    cli, root, _ = lora_run
    trainable = [n for n, p in cli.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    state = torch.load(cli.trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=False)
    model_keys = [k for k in state["state_dict"] if k.startswith("model.")]
    assert sorted(model_keys) == sorted(trainable)
    assert any(v.abs().sum() > 0 for k, v in state["state_dict"].items() if "lora_B" in k)  # it did train


def test_merged_export_generates_what_the_adapter_model_generates(lora_run: tuple, tmp_path: Path) -> None:
    cli, root, _ = lora_run
    module = load_checkpoint_module(cli.trainer.checkpoint_callback.best_model_path).eval()
    merged = export_model(module, tmp_path / "merged", merge=True)
    adapter = export_model(module, tmp_path / "adapter", merge=False)
    assert (adapter / "adapter_config.json").is_file() and not (merged / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(merged)
    prompts = [
        tok(t)["input_ids"] for t in ["<s><|user|>what is 3 plus one?<|assistant|>", "<s><|user|>hi<|assistant|>"]
    ]
    plain = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert generate(plain, tok, prompts, 10) == generate(module.model, tok, prompts, 10)
    base = AutoModelForCausalLM.from_pretrained(module.hparams.backbone).eval()
    assert generate(base, tok, prompts, 10) != generate(plain, tok, prompts, 10)  # the adapter changed something


def test_test_from_adapter_only_checkpoint(lora_run: tuple) -> None:
    cli, root, f = lora_run
    best = cli.trainer.checkpoint_callback.best_model_path
    tested = run(
        [
            "test",
            "--config",
            str(CONFIGS / "sft_chat.yaml"),
            "--model.backbone",
            str(cli.model.hparams.backbone),
            "--data.init_args.source.train",
            f,
            "--data.init_args.source.test",
            f,
            "--model.lora.r",
            "4",
            "--model.lora.alpha",
            "8",
            "--model.task_options.max_new_tokens",
            "6",
            "--model.task_options.generate_examples",
            "4",
            "--ckpt_path",
            best,
            "--trainer.default_root_dir",
            str(root / "test"),
            *QUIET,
        ]
    )
    val, test = cli.trainer.checkpoint_callback.best_model_score, tested.trainer.callback_metrics["test/perplexity"]
    assert test.item() == pytest.approx(val.item(), rel=1e-5)  # same rows as validation, same adapter weights


def test_classification_lora_trains_and_saves_the_head(tiny_bert: Path) -> None:
    from lit_ft.module import FineTuner

    module = FineTuner(
        task="classification",
        backbone=str(tiny_bert),
        lora=LoraSettings(r=2),
        info={"problem_type": "single_label", "label_names": ["neg", "pos"]},
    )
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("modules_to_save" in n and "classifier" in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert {k for k in module.state_dict() if k.startswith("model.")} == trainable
