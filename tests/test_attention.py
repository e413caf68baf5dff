"""`model.attn_implementation`: the backbone loads with the kernels asked for (its `config._attn_implementation`),
packed SFT batches take the layout those kernels read, `lit_ft check` and `fit` refuse flash-attention where it
cannot run (one finding, with its fix), and an export rebuilds such a checkpoint where flash-attention is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import QUIET, cli, tiny_args
from sft_fixtures import write_standins

from lit_ft.attention import flash_usable
from lit_ft.commands.cli import main
from lit_ft.commands.recipe import read_recipe
from lit_ft.commands.rules.machine import attention_on_machine
from lit_ft.commands.run_plan import RunPlan
from lit_ft.packing.attention import NAME, SPANS
from lit_ft.packing.bins import packed_inputs
from lit_ft.training.export import module_from_checkpoint
from lit_ft.training.safe_load import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("single_thread")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU machine's findings")


def _sft_fit(root: Path, llama: Path, *extra: str) -> Any:
    """One packed optimizer step of the chat recipe on the tiny Llama (no validation)."""
    files = write_standins(root / "data")
    return cli("fit", "--config", ROOT / "configs" / "sft_chat.yaml", "--model.backbone", llama,
               "--data.init_args.source.train", files["chat"], "--data.init_args.source.validation", "null",
               "--data.init_args.packing", "true", "--data.init_args.max_length", "128",
               "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", root,
               "--trainer.logger", "false", "--export.enabled", "false", *QUIET, *extra)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_the_backbone_loads_with_the_implementation_and_packing_follows_it(implementation: str, tmp_path: Path,
                                                                           llama: Path) -> None:
    fitted = _sft_fit(tmp_path, llama, "--model.attn_implementation", implementation)
    model = fitted.model.model
    batch = next(iter(fitted.datamodule.train_dataloader()))
    if implementation == "eager":  # Transformers' block-diagonal mask over the rows
        assert model.config._attn_implementation == "eager"
        assert SPANS not in packed_inputs(model, batch)
    else:  # sdpa on a CPU: switched to per-example attention by the packed batch it trained on
        assert model.config._attn_implementation == NAME
        assert packed_inputs(model, batch)[SPANS] == batch["spans"]
    assert fitted.model.hparams["attn_implementation"] == implementation  # saved to rebuild the model
    # a checkpoint of a flash-attention run rebuilds for export where the kernels cannot load (same weights)
    checkpoint = load_checkpoint_file(str(next((tmp_path / "checkpoints").glob("*.ckpt"))))
    checkpoint["hyper_parameters"]["attn_implementation"] = "flash_attention_2"
    rebuilt = module_from_checkpoint(checkpoint, "flash.ckpt")
    expected = "flash_attention_2" if flash_usable() else "sdpa"
    assert rebuilt.model is not None and rebuilt.model.config._attn_implementation == expected


def _quickstart(root: Path, tiny_bert: Path, files: dict[str, str]) -> list[str]:
    return ["--config", "configs/quickstart.yaml", *tiny_args(root, tiny_bert, files),
            "--model.attn_implementation", "flash_attention_2"]


@NO_CUDA
def test_check_and_fit_refuse_flash_attention_on_this_cpu_machine(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path, tiny_bert: Path,
                                                                  sentiment_files: dict[str, str]) -> None:
    argv = _quickstart(tmp_path / "run", tiny_bert, sentiment_files)
    with pytest.raises(SystemExit) as done:
        main(["check", *argv])
    assert done.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert ", 1 fatal (" in out[0]  # this one (the small data also draws a warning)
    at = out.index(next(line for line in out if "attention_on_machine" in line))
    assert out[at] == ("  fatal    attention_on_machine: model.attn_implementation flash_attention_2 needs a CUDA GPU "
                      "(flash-attn's kernels run only on CUDA) and trainer.accelerator resolves to 'cpu'")
    assert out[at + 1] == "           fix: run on a GPU, or set model.attn_implementation sdpa"
    with pytest.raises(SystemExit) as done:
        main(["fit", *argv])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lit_ft: error: model.attn_implementation flash_attention_2 needs a CUDA GPU")
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(SystemExit) as done:  # evaluation loads the backbone with the same kernels
        main(["validate", *argv])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "lit_ft: error: model.attn_implementation flash_attention_2 needs a CUDA GPU (flash-attn's kernels run only "
        "on CUDA) and trainer.accelerator resolves to 'cpu'; run on a GPU, or set model.attn_implementation sdpa")


def test_flash_attention_on_a_gpu_needs_the_package_and_half_precision(tmp_path: Path, tiny_bert: Path,
                                                                       sentiment_files: dict[str, str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = read_recipe([*_quickstart(tmp_path / "run", tiny_bert, sentiment_files), "--trainer.accelerator", "gpu"],
                      "check").cfg

    def finding(precision: str) -> tuple[str, str] | None:
        cfg.trainer.precision = precision
        return attention_on_machine(RunPlan(cfg, cuda_devices=1))

    if importlib.util.find_spec("flash_attn") is None:  # this machine: the package is missing
        problem, fix = finding("bf16-mixed") or ("", "")
        assert "needs the flash_attn package, which is not installed" in problem
        assert fix.startswith("pip install flash-attn")
        installed = tmp_path / "site" / "flash_attn"  # a package of that name on the path, as pip would leave it
        installed.mkdir(parents=True)
        (installed / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(installed.parent))
    problem, fix = finding("32-true") or ("", "")
    assert "computes in fp16 or bf16 only, and trainer.precision is 32-true" in problem
    assert fix.startswith("set trainer.precision bf16-mixed")
    assert finding("bf16-mixed") is None and finding("16-mixed") is None
    cfg.model.attn_implementation = "eager"
    assert finding("32-true") is None


def _saved_bytes(model: torch.nn.Module, input_ids: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward (each storage once)."""
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=input_ids)
    return sum(storages.values())


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_the_estimate_counts_what_eager_attention_keeps(family: str) -> None:
    from transformers import AutoModel, BertConfig, LlamaConfig

    from lit_ft.commands.memory import layer_activation_bytes
    from lit_ft.commands.model_memory import shape_of

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "vocab_size": 100}
    config = LlamaConfig(**sizes) if family == "llama" else BertConfig(**sizes, attention_probs_dropout_prob=0.0)
    input_ids = torch.randint(0, 100, (2, 64))  # (batch, seq)
    saved, per_layer = {}, {}
    for implementation in ("sdpa", "eager"):
        model = AutoModel.from_config(config, attn_implementation=implementation).train()
        saved[implementation] = _saved_bytes(model, input_ids)
        per_layer[implementation] = layer_activation_bytes(shape_of(model), 64, 4.0)
    # the s x s probabilities, a * s values per token and layer, where the fused kernel keeps a log-sum-exp: 4 heads
    # x 63 more fp32 values, for 2 x 64 tokens in 2 layers
    tokens_layers = 2 * 64 * 2
    assert saved["eager"] - saved["sdpa"] == tokens_layers * (per_layer["eager"] - per_layer["sdpa"])
    assert saved["eager"] - saved["sdpa"] == tokens_layers * 4 * 4 * 63


def test_the_estimate_verb_builds_the_recipe_model_with_the_implementation(
        tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per_token = {}
    for implementation in ("sdpa", "eager"):
        main(["estimate", "--config", "configs/quickstart.yaml", "--model.backbone", str(tiny_bert),
              "--model.attn_implementation", implementation])
        per_token[implementation] = float(capsys.readouterr().out.split("activations per token: ")[1].split()[0])
    # tiny_bert: 2 heads, max_length 64: 2 x 63 fp32 values more per token in each of 2 layers and in backward's
    # working copy of one layer (KiB, as printed)
    assert per_token["eager"] - per_token["sdpa"] == pytest.approx(3 * 2 * 63 * 4 / 1024, abs=0.1)
