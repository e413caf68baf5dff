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

from lit_ft.check_rules import attention_on_machine
from lit_ft.cli import main
from lit_ft.export import module_from_checkpoint
from lit_ft.packed_attention import NAME, SPANS
from lit_ft.packing import packed_inputs
from lit_ft.recipe import read_recipe
from lit_ft.run_plan import RunPlan
from lit_ft.safe_load import load_checkpoint_file

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
    assert rebuilt.model is not None and rebuilt.model.config._attn_implementation == "sdpa"


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
    assert out[at + 1] == "           fix: train on a GPU, or set model.attn_implementation sdpa"
    with pytest.raises(SystemExit) as done:
        main(["fit", *argv])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lit_ft: error: model.attn_implementation flash_attention_2 needs a CUDA GPU")
    assert not (tmp_path / "run" / "checkpoints").exists()


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
