"""Pre-flight rules of the machine and the backbone (precision, compile, attention kernels, the backbone and hub
data being here, lengths, LoRA targets, packing); what a rule is: `lit_ft.commands.rules.rule`."""

from __future__ import annotations

import re
from typing import Any

from lit_ft.commands.rules.rule import rule
from lit_ft.commands.run_plan import RunPlan
from lit_ft.errors import UserError

NATIVE_BF16 = frozenset({"amx_bf16", "avx512_bf16", "bf16"})  # x86 AMX / AVX-512 BF16; ARM `bf16`


# ---- the machine ---------------------------------------------------------------------------------
def _precision(plan: RunPlan) -> str:
    given = str(plan.trainer.precision or "32-true")
    return {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32-true", "64": "64-true"}.get(given, given)


@rule("fatal")
def precision_on_accelerator(plan: RunPlan) -> tuple[str, str] | None:
    """A precision (or accelerator) this machine cannot run as asked."""
    precision, device = _precision(plan), plan.accelerator
    if device == "cuda" and not plan.cuda_count:
        return (f"trainer.accelerator is '{plan.trainer.accelerator}' but no CUDA device is visible",
                "set trainer.accelerator cpu (or auto), with trainer.precision 32-true or bf16-mixed")
    if device == "cpu" and precision in ("16-mixed", "16-true"):
        return (f"trainer.precision {precision} on the CPU: fp16 runs on CUDA GPUs (on a CPU Lightning swaps "
                "16-mixed for bf16-mixed)", "set trainer.precision bf16-mixed or 32-true, or train on a GPU")
    if device != "cuda" and precision.startswith("transformer-engine"):
        return f"trainer.precision {precision} needs a CUDA GPU", "set trainer.precision 32-true or bf16-mixed"
    if device == "cuda" and precision.startswith("bf16") and not _cuda_bf16():
        return (f"trainer.precision {precision}: this GPU has no bf16 support (before Ampere)",
                "set trainer.precision 16-mixed or 32-true")
    return None


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@rule("warning")
def bf16_on_cpu_without_native_bf16(plan: RunPlan) -> tuple[str, str] | None:
    """bf16 on a CPU without bf16 instructions is emulated: matmuls some 70x slower than fp32."""
    flags = plan.cpu_flags
    if plan.accelerator != "cpu" or not _precision(plan).startswith("bf16") or flags is None or flags & NATIVE_BF16:
        return None
    return (f"trainer.precision {_precision(plan)} on a CPU without native bf16 (no amx_bf16 / avx512_bf16 in "
            "/proc/cpuinfo): bf16 matrix products are emulated, about 70x slower than fp32",
            "set trainer.precision 32-true on this machine")


@rule("fatal")
def compile_on_machine(plan: RunPlan) -> tuple[str, str] | None:
    """`model.compile` where torch.compile cannot build kernels (no C++ compiler on a CPU, no triton on CUDA)."""
    from lit_ft.compile import compiler_problem

    problem = compiler_problem(plan.accelerator == "cuda") if plan.cfg.model.get("compile") else None
    return (f"model.compile: {problem}", "install one, or set model.compile false") if problem else None


@rule("fatal")
def attention_on_machine(plan: RunPlan) -> tuple[str, str] | None:
    """`model.attn_implementation flash_attention_2` without a CUDA GPU, the flash_attn package, or fp16/bf16
    compute (`lit_ft.attention`)."""
    from lit_ft.attention import attention_problem

    return attention_problem(plan.cfg.model.get("attn_implementation"), plan.accelerator, _precision(plan))


def refuse_unusable_attention(plan: RunPlan) -> None:
    """validate, test and predict load the backbone with the same kernels as fit: the same one-line refusal (fit
    gets it from `enforce`)."""
    found = attention_on_machine(plan)
    if found is not None:
        raise UserError(f"{found[0]}; {found[1]}")


# ---- the backbone and the hub ----------------------------------------------------------------------
@rule("fatal", prerequisite=True)
def backbone_found(plan: RunPlan) -> tuple[str, str] | None:
    """`model.backbone` is a model directory, a packaged copy, in the Hugging Face cache, or on a reachable hub."""
    from lit_ft.backbone import locate_backbone
    from lit_ft.hub import NotHere

    try:
        locate_backbone(str(plan.cfg.model.backbone))
    except NotHere as err:
        return err.problem, err.fix
    return None


@rule("fatal", prerequisite=True)
def hub_data_here(plan: RunPlan) -> tuple[str, str] | None:
    """A hub dataset that is not cached while the hub cannot be asked; the fix names the recipe's offline piece."""
    from lit_ft.hub import hub_data_problem

    return hub_data_problem(plan.cfg)


@rule("fatal")
def backbone_needs_remote_code(plan: RunPlan) -> tuple[str, str] | None:
    """A backbone whose config asks for its own modeling code (`trust_remote_code`), which lit_ft never runs."""
    config = plan.backbone_config
    if not config or not config.get("auto_map"):
        return None
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type in CONFIG_MAPPING:
        return None  # Transformers has its own implementation and uses it
    return (f"backbone '{plan.cfg.model.backbone}' asks for trust_remote_code (config.json has auto_map, and "
            f"model_type {model_type!r} is not built into Transformers); lit_ft never runs code from a model repo",
            "choose a backbone Transformers implements itself, or convert the model to one")


@rule("fatal", needs_data=True)
def max_length_beyond_positions(plan: RunPlan) -> tuple[str, str] | None:
    """A length setting longer than the backbone's position table (`TaskDataModule.length_problems`)."""
    problems = plan.data.length_problems()
    if not problems:
        return None
    problem, _, fix = problems[0].partition("; ")
    return problem, fix


@rule("fatal")
def lora_targets_in_backbone(plan: RunPlan) -> tuple[str, str] | None:
    """`model.lora.target_modules` that name no module of the backbone (peft's own matching)."""
    lora = plan.cfg.model.get("lora")
    targets = getattr(lora, "target_modules", None) if lora is not None else None
    if not targets or targets == "all-linear":
        return None
    names = _module_names(str(plan.cfg.model.backbone))
    if names is None:
        return None  # the backbone cannot be built from its config here; loading it will say why
    if isinstance(targets, str):  # peft reads one string as a regular expression over the full module name
        missing = [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    else:  # and a list as name suffixes
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if not missing:
        return None
    leaves = sorted({n.rsplit(".", 1)[-1] for n, linear in names.items() if linear})
    return (f"model.lora.target_modules {missing} match no module of backbone '{plan.cfg.model.backbone}'",
            f"name some of its linear layers ({', '.join(leaves)}) or use all-linear")


def _module_names(backbone: str) -> dict[str, bool] | None:
    """Module names of the backbone (built on the meta device: no weights) -> whether each is a linear layer."""
    import torch
    from transformers import AutoConfig, AutoModel

    from lit_ft.backbone import resolve_backbone

    try:
        config = AutoConfig.from_pretrained(resolve_backbone(backbone))
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except (OSError, ValueError, KeyError):  # not found, or an architecture AutoModel does not know
        return None
    return {n: isinstance(m, torch.nn.Linear) for n, m in model.named_modules() if n}


@rule("fatal", needs_data=True)
def packing_on_backbone(plan: RunPlan) -> tuple[str, str] | None:
    """`data.packing` on a backbone architecture that lets packed examples attend to each other
    (`lit_ft.packing.probe`: a tiny model of its type, packed against unpacked)."""
    if not getattr(plan.data, "packing", False):
        return None
    from lit_ft.packing.probe import packing_problem

    config = plan.backbone_config if plan.backbone_config is not None else _fetched_config(str(plan.cfg.model.backbone))
    problem = None if config is None else packing_problem(config)
    if problem is None:
        return None
    return problem, "set data.packing false, or choose a backbone such as Llama, Qwen2, Mistral, GPT-NeoX or GPT-2"


def _fetched_config(backbone: str) -> dict[str, Any] | None:
    """The backbone's config where it is not on this machine yet (hub); None when it cannot be read (loading the
    backbone will say why)."""
    from transformers import AutoConfig

    from lit_ft.backbone import resolve_backbone

    try:
        return dict(AutoConfig.from_pretrained(resolve_backbone(backbone)).to_dict())
    except (OSError, ValueError):
        return None
