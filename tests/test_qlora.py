"""QLoRA settings (`model.quantization`): parsed and typed by jsonargparse, refused before anything loads where
bitsandbytes cannot run (no CUDA) or nothing could train (no LoRA), and counted in 4 bits by `lit_ft estimate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_ft.commands.cli import main
from lit_ft.commands.recipe import read_recipe
from lit_ft.errors import UserError
from lit_ft.quantization import QuantizationSettings, as_settings, check_quantization

RECIPE = ["--config", "configs/quickstart.yaml"]


def test_quantization_parses_into_typed_settings() -> None:
    cfg = read_recipe([*RECIPE, "--model.lora.r", "8", "--model.quantization.quant_type", "fp4",
                       "--model.quantization.double_quant", "false"], "estimate").cfg
    settings = as_settings(cfg.model.quantization.as_dict())
    assert settings == QuantizationSettings(bits=4, quant_type="fp4", compute_dtype="bfloat16", double_quant=False)
    assert settings.bytes_per_weight() == 0.5 + 4 / 64


def test_unknown_quant_type_is_a_parse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["estimate", *RECIPE, "--model.lora.r", "8", "--model.quantization.quant_type", "int3"])
    assert exit_.value.code == 2
    assert "quant_type" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_fit_without_cuda_is_one_line_exit_2_nothing_written(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *RECIPE, "--model.lora.r", "8", "--model.quantization.bits", "4",
              "--trainer.default_root_dir", str(root)])
    assert exit_.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["lit_ft: error: model.quantization (QLoRA) needs a CUDA GPU: bitsandbytes 4-bit kernels run only "
                   "on CUDA and this machine has none; remove model.quantization (plain LoRA runs here) or run on a "
                   "GPU"]
    assert not root.exists() and "bitsandbytes" not in __import__("sys").modules


def test_quantization_without_lora_is_an_error() -> None:
    with pytest.raises(UserError, match="model.quantization needs model.lora"):
        check_quantization(QuantizationSettings(), None, cuda_available=True)
    check_quantization(QuantizationSettings(), {"r": 8}, cuda_available=True)  # fine with a GPU and LoRA


def test_estimate_counts_4bit_base_weights(tiny_bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from lit_ft.commands.model_memory import estimate_model
    from lit_ft.lora import LoraSettings, apply_lora

    model = apply_lora(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2),
                       LoraSettings(r=4), "SEQ_CLS")
    c = model.config
    # frozen linear weights: q, k, v, attention output, intermediate, output per layer, and the pooler
    base_linear = c.num_hidden_layers * (4 * c.hidden_size**2 + 2 * c.hidden_size * c.intermediate_size) \
        + c.hidden_size**2
    q = QuantizationSettings()
    plain = estimate_model(model, precision="32-true", batch_size=2, max_length=8)
    quantized = estimate_model(model, precision="32-true", batch_size=2, max_length=8, quantization=q)
    assert plain.weights - quantized.weights == pytest.approx(base_linear * (4 - 0.5 - 1 / 64 - 4 / (64 * 256)))
    assert (quantized.gradients, quantized.activations) == (plain.gradients, plain.activations)
