"""The model card (`README.md`) of an export: the Hub's metadata header (base model, task, data sets, the best
checkpoint's metrics as `model-index`) and what a reader needs: metrics, training settings, how to load it.

Everything comes from the run: the checkpoint's hyperparameters, the run's `config.yaml` and its
`metrics/*.json` files; the header is written by `huggingface_hub.ModelCardData`, as the Hub's own tools do.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from lit_ft.module import FineTuner

CARD = "README.md"
# model settings worth a reader's eye (the FineTuner's arguments), then the run's config keys, by path
MODEL_SETTINGS = ("learning_rate", "weight_decay", "warmup", "schedule", "freeze_backbone", "freeze_layers", "lora",
                  "quantization", "task_options")
RUN_SETTINGS = ("seed_everything", "data.init_args.batch_size", "data.init_args.max_length", "trainer.max_epochs",
                "trainer.max_steps", "trainer.precision", "trainer.accumulate_grad_batches",
                "trainer.gradient_clip_val")


@dataclass(frozen=True)
class CardSource:
    """Where an export's weights come from.

    Args:
        run_dir: The run directory (its `config.yaml` and `metrics/`), if any.
        checkpoint: The checkpoint file the weights were loaded from (None: the final model of a fit).
        step: The optimizer step the weights are from.
        epoch: The epoch they are from.
    """

    run_dir: Path | None = None
    checkpoint: str | None = None
    step: int | None = None
    epoch: int | None = None


def write_model_card(module: FineTuner, out: Path, source: CardSource, model_id: str) -> None:
    """Write `out/README.md` for the export of `module` being written in `out`; `model_id` is the Hub repo (or the
    directory) the card names."""
    config = run_config(source.run_dir)
    metrics = best_metrics(source.run_dir, source.step)
    data = data_source(config)
    mix = nested(config, "data.init_args.sources") or nested(config, "data.sources")  # a mixed run's sources
    hub = data.get("hub")
    library = "peft" if (out / "adapter_config.json").is_file() else "transformers"  # a LoRA adapter alone
    header = card_header(module, model_id, metrics, hub, library)
    sections = [("Metrics of the best checkpoint", metrics_text(source, metrics)),
                ("Training settings", settings_text(module, config)),
                *module.plugin.model_card(model_id, out),
                ("Framework versions", versions_text())]
    body = "\n\n".join(f"## {title}\n\n{text}" for title, text in sections)
    intro = (f"# {Path(model_id).name}\n\n`{module.hparams['backbone']}` fine-tuned with lit_ft "
             f"for the `{module.hparams['task']}` task on "
             f"{mix_text(mix) if isinstance(mix, list) and mix else data_text(data)}.")
    (out / CARD).write_text(f"---\n{header}\n---\n\n{intro}\n\n{body}\n", encoding="utf-8")


def card_header(module: FineTuner, model_id: str, metrics: dict[str, float], hub: str | None,
                library: str = "transformers") -> str:
    """The YAML metadata the Hub reads: `base_model` (a Hub id, not a local directory), `library_name`,
    `pipeline_tag`, `tags`, `datasets` (a Hub data set) and `model-index` with the best checkpoint's metrics."""
    from huggingface_hub import EvalResult, ModelCardData

    backbone, tag = str(module.hparams["backbone"]), module.plugin.pipeline_tag
    task = module.hparams["task"]
    results = [EvalResult(task_type=tag or task, dataset_type=hub or "custom", dataset_name=hub or "validation data",
                          dataset_split="validation", metric_type=key.removeprefix("val/"), metric_name=key,
                          metric_value=value) for key, value in metrics.items()]
    adapter = ["lora"] if module.hparams.get("lora") is not None else []
    data = ModelCardData(base_model=None if Path(backbone).exists() else backbone, library_name=library,
                         pipeline_tag=tag, tags=["lit_ft", task, *adapter], datasets=[hub] if hub else None,
                         model_name=Path(model_id).name if results else None, eval_results=results or None)
    return str(data.to_yaml())


def run_config(run_dir: Path | None) -> dict[str, Any]:
    """The fit's `config.yaml` ({} when the run has none, say a loose checkpoint file)."""
    path = None if run_dir is None else run_dir / "config.yaml"
    if path is None or not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def best_metrics(run_dir: Path | None, step: int | None) -> dict[str, float]:
    """The validation metrics at the checkpoint's step, from the run's `metrics/val_*.json` ({} without them)."""
    if run_dir is None or step is None:
        return {}
    for path in sorted((run_dir / "metrics").glob("val_*.json"), reverse=True):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("step") == step:
            return {str(k): float(v) for k, v in (record.get("metrics") or {}).items()}
    return {}


def nested(config: dict[str, Any], path: str) -> Any:
    """`config`'s value at a dotted path (None where it is missing)."""
    value: Any = config
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def data_source(config: dict[str, Any]) -> dict[str, Any]:
    """The run's `data.source` settings that are set (the CLI may have saved `--data.source.X null` as "None")."""
    found = nested(config, "data.init_args.source") or nested(config, "data.source")
    return {k: v for k, v in found.items() if v not in (None, "None", "null")} if isinstance(found, dict) else {}


def data_text(source: dict[str, Any]) -> str:
    if source.get("hub"):
        return f"the Hub data set [{source['hub']}](https://huggingface.co/datasets/{source['hub']})"
    files = [Path(str(source[s])).name for s in ("train", "validation") if source.get(s)]
    return f"local data ({', '.join(f'`{f}`' for f in files)})" if files else "local data"


def mix_text(sources: list[Any]) -> str:
    """`a mix of 2 sources: `alpaca` (`alpaca.json`, weight 0.5), `chat` (`chat.jsonl`, max_rows 200)`."""
    parts = []
    for entry in (s for s in sources if isinstance(s, dict)):
        where = entry.get("hub") or Path(str(entry.get("train") or "")).name
        rule = "".join(f", {key} {entry[key]}" for key in ("weight", "max_rows") if entry.get(key) is not None)
        parts.append(f"`{entry.get('name')}` (`{where}`{rule})")
    return f"a mix of {len(parts)} sources: {', '.join(parts)}"


def metrics_text(source: CardSource, metrics: dict[str, float]) -> str:
    where = (f"`{Path(source.checkpoint).name}`" if source.checkpoint else "the final model") + \
        "".join(f", {name} {value}" for name, value in (("epoch", source.epoch), ("step", source.step))
                if value is not None)
    if not metrics:
        return f"Exported from {where}; its run directory holds no validation metrics for it."
    rows = "\n".join(f"| {key} | {value:.4f} |" for key, value in metrics.items())
    return f"Validation metrics of {where}:\n\n| metric | value |\n|---|---|\n{rows}"


def settings_text(module: FineTuner, config: dict[str, Any]) -> str:
    found = {key: module.hparams.get(key) for key in MODEL_SETTINGS}
    found.update({key: nested(config, key) for key in RUN_SETTINGS})
    rows = "\n".join(f"| {key} | `{json.dumps(value, default=plain)}` |" for key, value in found.items()
                     if value is not None)
    return f"| setting | value |\n|---|---|\n{rows}"


def plain(value: Any) -> Any:
    """A setting object (LoRA, quantization: dataclasses) as JSON can write it."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else str(value)


def versions_text() -> str:
    import torch
    import transformers

    from lit_ft import __version__

    return f"- lit_ft {__version__}\n- transformers {transformers.__version__}\n- torch {torch.__version__}"
