"""`lit_ft estimate`: parameters, trainable parameters and the peak memory per device of a recipe, before any
compute. The recipe is read as `fit` reads it (`lit_ft.commands.recipe`), its model
counted by `lit_ft.commands.model_memory` (also `lit_ft check`'s memory rule). What neither counts is printed too.
"""

from __future__ import annotations

from lit_ft.commands.memory import MemoryEstimate
from lit_ft.commands.model_memory import recipe_estimate, strategy_name
from lit_ft.commands.preflight import recipe_argv, recipe_parser

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
    from lit_ft.commands.recipe import read_recipe
    from lit_ft.commands.run_plan import RunPlan

    recipe = read_recipe(recipe_argv(args.config, rest), "estimate")
    plan = RunPlan(recipe.cfg, recipe.data)
    devices = args.devices or plan.devices
    found = recipe_estimate(recipe.cfg, recipe.data, devices, accelerator=plan.accelerator)
    print(render(found, str(recipe.cfg.trainer.precision), strategy_name(recipe.cfg.trainer.strategy), devices,
                 plan.accelerator))


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
    if found.frozen:
        rows.insert(1, ("frozen model", found.frozen, "a frozen model the task holds besides (a reference model)"))
    if found.on_host:
        rows = [("process", found.process, "python and the libraries, recipe and tokenizer, measured here"),
                *rows, ("checkpoint", found.checkpoint, "the serialized copy Lightning writes the checkpoint from")]
    return [f"  {name:<16} {value / GIB:8.3f} GiB  {why}".rstrip() for name, value, why in rows]
