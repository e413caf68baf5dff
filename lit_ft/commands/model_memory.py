"""The peak memory per device of a model, counted: the recipe's model built on the `meta` device by the task's own
`build_model` with `LoadOptions(meta=True)` (`lit_ft.commands.meta_model`), its shape and parameters put into the
formulas of `lit_ft.commands.memory`. On the CPU the device's memory is the process's resident memory, so the total
adds the process itself, measured here (`lit_ft.commands.process_memory`), and the checkpoint buffer; on a GPU they
are host memory. Used by `lit_ft estimate` and by `lit_ft check`'s `memory_per_device` rule, neither of which this
module imports (the rule reads no recipe).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from lit_ft.adapters.transformers import attn_implementation
from lit_ft.commands.memory import MemoryEstimate, Shape, estimate, first, sharding
from lit_ft.quantization import QuantizationSettings, as_settings


def recipe_estimate(cfg: Any, data: Any, devices: int, accelerator: str | None = None) -> MemoryEstimate:
    """The estimate of a parsed fit config and its data module (`lit_ft estimate`, and `lit_ft check`'s rule),
    with the host memory of the training process: the process itself, measured here once the recipe's model is
    built on `meta` (`lit_ft.commands.process_memory`), and where the `accelerator` (default: the recipe's, as
    resolved on this machine) is the CPU, the training tensors too."""
    from lit_ft.commands.meta_model import meta_finetuner
    from lit_ft.commands.process_memory import process_baseline
    from lit_ft.commands.run_plan import RunPlan
    from lit_ft.lora import is_adapter_model

    accelerator = accelerator or RunPlan(cfg, data).accelerator

    model_args = cfg.model.as_dict()
    finetuner = meta_finetuner(model_args, data.info)
    model = finetuner.model
    assert model is not None, "FineTuner.build sets the model"
    found = estimate_model(
        model, precision=str(cfg.trainer.precision),
        batch_size=data.batch_size * finetuner.plugin.sequences_per_example,
        max_length=data.max_length, strategy=strategy_name(cfg.trainer.strategy), devices=devices,
        checkpointing=bool(model_args.get("gradient_checkpointing")) or strategy_checkpoints(cfg.trainer.strategy),
        quantization=as_settings(model_args.get("quantization")), adapter=is_adapter_model(model),
        eval_batch_size=int(getattr(data, "eval_batch_size", 0) or 0) * finetuner.plugin.sequences_per_example,
        frozen=finetuner.plugin.frozen_parameters(model),
    )
    return replace(found, process=float(process_baseline(cfg.trainer)), on_host=accelerator == "cpu")


def estimate_model(model: nn.Module, *, precision: str, batch_size: int, max_length: int, strategy: str = "auto",
                   devices: int = 1, checkpointing: bool = False,
                   quantization: QuantizationSettings | None = None, adapter: bool = False,
                   eval_batch_size: int = 0, frozen: int = 0) -> MemoryEstimate:
    """The estimate for a built model (on `meta` or not); with `quantization`, its frozen linear weights count
    as 4-bit ones; an `adapter` model checkpoints only its trainable weights; with `eval_batch_size`, an
    evaluation batch counts where it needs more than the step's activations; `frozen` parameters of another
    model the task holds (`Task.frozen_parameters`) count as weights of their own."""
    params = list(model.parameters())
    shape = shape_of(model)
    return estimate(
        parameters=sum(p.numel() for p in params), trainable=sum(p.numel() for p in params if p.requires_grad),
        shape=shape, precision=precision, batch_size=batch_size, max_length=max_length,
        split=sharding(strategy, devices), checkpointing=checkpointing,
        lora_inputs=lora_inputs(model) // max(shape.layers, 1),
        quantized=quantizable(model) if quantization else 0,
        quantized_bytes=quantization.bytes_per_weight() if quantization else 0.0, adapter=adapter,
        eval_batch_size=eval_batch_size, frozen=frozen,
    )


def quantizable(model: nn.Module) -> int:
    """Weights bitsandbytes stores in 4 bits: frozen linear layers' weights, the output head and the task head
    (peft's frozen `original_module` of a trained head) excepted, as Transformers leaves them unquantized."""
    output: Any = getattr(model, "get_output_embeddings", lambda: None)()
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m is not output and not m.weight.requires_grad
               and "original_module" not in name)


def shape_of(model: nn.Module) -> Shape:
    """The transformer shape from the model's config (names differ between BERT, Llama, GPT-2, T5 configs)."""
    config: Any = model.config
    hidden = int(first(config, "hidden_size", "n_embd", "d_model", default=0))
    names = [n for n, _ in model.named_modules()]
    output: Any = getattr(model, "get_output_embeddings", lambda: None)()
    return Shape(
        layers=int(first(config, "num_hidden_layers", "n_layer", "num_layers", default=0))
        + int(first(config, "num_decoder_layers", default=0)),
        hidden=hidden,
        intermediate=int(first(config, "intermediate_size", "n_inner", "d_ff", default=4 * hidden)),
        heads=int(first(config, "num_attention_heads", "n_head", "num_heads", default=1)),
        vocab=int(first(config, "vocab_size", default=0)),
        gated=any(n.endswith("gate_proj") for n in names),
        hidden_dropout=float(first(config, "hidden_dropout_prob", "resid_pdrop", "dropout_rate", default=0.0)),
        attention_dropout=float(first(config, "attention_probs_dropout_prob", "attention_dropout", "attn_pdrop",
                                      default=0.0)),
        lm_head=output is not None,
        eager_attention=attn_implementation(config) == "eager",
    )


def lora_inputs(model: nn.Module) -> int:
    """Input features of all LoRA-adapted linear layers whose adapter has dropout (they keep its output)."""
    total = 0
    for module in model.modules():
        dropouts: Any = getattr(module, "lora_dropout", None)
        adapters: Any = getattr(module, "lora_A", None)
        if isinstance(adapters, nn.ModuleDict) and len(adapters) and isinstance(dropouts, nn.ModuleDict):
            if any(isinstance(m, nn.Dropout) for m in dropouts.values()):
                first_adapter: Any = next(iter(adapters.values()))
                total += int(first_adapter.in_features)
    return total


def strategy_name(strategy: Any) -> str:
    """`ddp`, `deepspeed_stage_3`, or a strategy's class path (`...FSDPStrategy`)."""
    if isinstance(strategy, str):
        return strategy
    path = getattr(strategy, "class_path", None) or type(strategy).__name__
    stage = getattr(getattr(strategy, "init_args", None), "stage", None)
    return f"{path}_stage_{stage}" if stage else str(path)


def strategy_checkpoints(strategy: Any) -> bool:
    """Whether the strategy recomputes activations itself (FSDP's `activation_checkpointing_policy`)."""
    init_args = getattr(strategy, "init_args", None)
    return any(getattr(init_args, key, None) for key in ("activation_checkpointing_policy", "activation_checkpointing"))
