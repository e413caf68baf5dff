"""`lit_ft estimate`: parameters, trainable parameters and the peak memory per device of a recipe, before any
compute. The recipe is read as `fit` reads it (`lit_ft.recipe`), its model built on the `meta` device by the task's
own `build_model` with `LoadOptions(meta=True)` (`lit_ft.meta_model`) and counted; the formulas are in
`lit_ft.memory`. On the CPU the device's memory is the process's resident memory, so the total adds the process
itself, measured here (`lit_ft.process_memory`), and the checkpoint buffer; on a GPU they are printed as host memory.
What neither counts is printed too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from lit_ft.memory import MemoryEstimate, Shape, estimate, first, sharding
from lit_ft.preflight import recipe_argv, recipe_parser
from lit_ft.quantization import QuantizationSettings, as_settings
from lit_ft.transformers_internals import attn_implementation

GIB = 1024**3


def main(argv: list[str]) -> None:
    parser = recipe_parser(
        "lit_ft estimate",
        "Parameters, trainable parameters and the peak memory per device of a recipe (weights, "
        "gradients, optimizer state, activations, an evaluation batch; on the CPU also the process and the "
        "checkpoint buffer) for its precision, LoRA, gradient checkpointing and strategy; the model is built "
        "on the meta device, so nothing is loaded or computed.",
        "--trainer.precision bf16-true",
    )
    parser.add_argument("--devices", type=int, default=None,
                        help="devices to shard across (default: the recipe's trainer.devices on this machine)")
    args, rest = parser.parse_known_args(argv)
    from lit_ft.recipe import read_recipe
    from lit_ft.run_plan import RunPlan

    recipe = read_recipe(recipe_argv(args.config, rest), "estimate")
    plan = RunPlan(recipe.cfg, recipe.data)
    devices = args.devices or plan.devices
    found = recipe_estimate(recipe.cfg, recipe.data, devices, accelerator=plan.accelerator)
    print(render(found, str(recipe.cfg.trainer.precision), strategy_name(recipe.cfg.trainer.strategy), devices,
                 plan.accelerator))


def recipe_estimate(cfg: Any, data: Any, devices: int, accelerator: str | None = None) -> MemoryEstimate:
    """The estimate of a parsed fit config and its data module (`lit_ft estimate`, and `lit_ft check`'s rule),
    with the host memory of the training process: the process itself, measured here once the recipe's model is
    built on `meta` (`lit_ft.process_memory`), and where the `accelerator` (default: the recipe's, as resolved on
    this machine) is the CPU, the training tensors too."""
    from lit_ft.lora import is_adapter_model
    from lit_ft.meta_model import meta_finetuner
    from lit_ft.process_memory import process_baseline
    from lit_ft.run_plan import RunPlan

    accelerator = accelerator or RunPlan(cfg, data).accelerator

    model_args = cfg.model.as_dict()
    model = meta_finetuner(model_args, data.info).model
    assert model is not None, "FineTuner.build sets the model"
    found = estimate_model(
        model, precision=str(cfg.trainer.precision), batch_size=data.batch_size,
        max_length=data.max_length, strategy=strategy_name(cfg.trainer.strategy), devices=devices,
        checkpointing=bool(model_args.get("gradient_checkpointing")) or strategy_checkpoints(cfg.trainer.strategy),
        quantization=as_settings(model_args.get("quantization")), adapter=is_adapter_model(model),
        eval_batch_size=int(getattr(data, "eval_batch_size", 0) or 0),
    )
    return replace(found, process=float(process_baseline(cfg.trainer)), on_host=accelerator == "cpu")


def estimate_model(model: nn.Module, *, precision: str, batch_size: int, max_length: int, strategy: str = "auto",
                   devices: int = 1, checkpointing: bool = False,
                   quantization: QuantizationSettings | None = None, adapter: bool = False,
                   eval_batch_size: int = 0) -> MemoryEstimate:
    """The estimate for a built model (on `meta` or not); with `quantization`, its frozen linear weights count
    as 4-bit ones; an `adapter` model checkpoints only its trainable weights; with `eval_batch_size`, an
    evaluation batch counts where it needs more than the step's activations."""
    params = list(model.parameters())
    shape = shape_of(model)
    return estimate(
        parameters=sum(p.numel() for p in params), trainable=sum(p.numel() for p in params if p.requires_grad),
        shape=shape, precision=precision, batch_size=batch_size, max_length=max_length,
        split=sharding(strategy, devices), checkpointing=checkpointing,
        lora_inputs=lora_inputs(model) // max(shape.layers, 1),
        quantized=quantizable(model) if quantization else 0,
        quantized_bytes=quantization.bytes_per_weight() if quantization else 0.0, adapter=adapter,
        eval_batch_size=eval_batch_size,
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


def render(found: MemoryEstimate, precision: str, strategy: str, devices: int, accelerator: str = "cpu") -> str:
    """The breakdown: each part on its line, with what the total includes and what it leaves out."""
    where = "host memory (resident, the device is the CPU)" if found.on_host else f"{accelerator} device memory"
    lines = [
        f"parameters: {found.parameters:,} ({found.trainable:,} trainable, "
        f"{100 * found.trainable / max(found.parameters, 1):.2f}%)",
        f"peak memory per device (estimate): {found.total / GIB:.2f} GiB of {where}  "
        f"[precision {precision}, strategy {strategy}, {devices} device(s)]",
        *_rows(found),
        f"  activations per token: {found.activations_per_token / 1024:.1f} KiB x {found.tokens:,} tokens "
        "(batch_size x max_length: a full-length batch; batches padded to shorter rows need less)",
    ]
    if not found.on_host:
        lines.append(f"host memory per process (estimate): {found.host / GIB:.2f} GiB "
                     f"(process {found.process / GIB:.3f} + checkpoint buffer {found.checkpoint / GIB:.3f})")
    left = ["the data set in memory (rows and features, which grow with the data)",
            "data loader workers (processes of their own)"]
    if not found.on_host:
        left.append("the CUDA context and kernels (device memory outside PyTorch's allocator, and the CUDA "
                    "libraries' host memory once CUDA starts)")
    lines.append("left out: " + ", ".join(left))
    return "\n".join(lines)


def _rows(found: MemoryEstimate) -> list[str]:
    rows = [("weights", found.weights, ""), ("gradients", found.gradients, ""),
            ("optimizer state", found.optimizer, ""), ("activations", found.activations, ""),
            ("evaluation", found.evaluation, "an eval batch's forward; the larger of it and the activations counts")]
    if found.on_host:
        rows = [("process", found.process, "python and the libraries, recipe and tokenizer, measured here"),
                *rows, ("checkpoint", found.checkpoint, "the serialized copy Lightning writes the checkpoint from")]
    return [f"  {name:<16} {value / GIB:8.3f} GiB  {why}".rstrip() for name, value, why in rows]
