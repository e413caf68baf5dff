"""QLoRA: a 4-bit base model through bitsandbytes with LoRA adapters on top (`model.quantization`).

bitsandbytes' 4-bit kernels need CUDA, and only the adapters can train on a quantized base, so both are checked
from the parsed config before anything loads (`check_quantization`). bitsandbytes is the optional extra `qlora`
(`pip install 'lit_ft[qlora]'`), imported only when a quantized model is built; its config reaches the task's
`from_pretrained` as `LoadOptions.quantization_config` (`lit_ft.loading`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lit_ft.errors import UserError

# bytes per quantized weight: 4 bits, plus one fp32 absmax per block of 64 weights, or with double quantization
# one 8-bit absmax per block and one fp32 constant per 256 blocks (Dettmers et al., QLoRA, 2023)
BLOCK = 64
BYTES_4BIT = 0.5
CONSTANTS = {False: 4 / BLOCK, True: 1 / BLOCK + 4 / (BLOCK * 256)}


@dataclass
class QuantizationSettings:
    """4-bit quantization of the frozen base model (`model.quantization`); needs `model.lora` and a CUDA GPU.

    Args:
        bits: Bits per base weight (bitsandbytes 4-bit).
        quant_type: `nf4` (normal float, QLoRA's choice) or `fp4`.
        compute_dtype: Dtype the dequantized weights compute in.
        double_quant: Quantize the quantization constants too (about 0.37 bits per weight less).
    """

    bits: Literal[4] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    double_quant: bool = True

    def bytes_per_weight(self) -> float:
        return BYTES_4BIT + CONSTANTS[self.double_quant]


def as_settings(value: QuantizationSettings | dict[str, Any] | None) -> QuantizationSettings | None:
    if value is None or isinstance(value, QuantizationSettings):
        return value
    return QuantizationSettings(**dict(value))


def check_quantization(quantization: Any, lora: Any, cuda_available: bool | None = None) -> None:
    """The one-line errors of a quantized recipe, before anything loads."""
    if quantization is None:
        return
    if lora is None:
        raise UserError("model.quantization needs model.lora: a 4-bit base model cannot train, only LoRA adapters "
                        "on it can; set model.lora (for example --model.lora.r 16) or remove model.quantization")
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        raise UserError("model.quantization (QLoRA) needs a CUDA GPU: bitsandbytes 4-bit kernels run only on CUDA "
                        "and this machine has none; remove model.quantization (plain LoRA runs here) or run on a GPU")


def bnb_config(settings: QuantizationSettings) -> Any:
    """transformers' BitsAndBytesConfig for the settings (bitsandbytes imported here, with the fix when missing)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise UserError("model.quantization needs bitsandbytes: pip install 'lit_ft[qlora]'") from err
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_compute_dtype=getattr(torch, settings.compute_dtype),
        bnb_4bit_use_double_quant=settings.double_quant,
    )


def prepare_for_adapters(model: Any, checkpointing: bool) -> Any:
    """peft's preparation of a k-bit model for training (norms in fp32, input gradients for checkpointing)."""
    from lit_ft.lora import _peft

    return _peft().prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
