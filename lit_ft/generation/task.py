"""The shared model side of generative tasks (seq2seq, sft): one option vocabulary, one evaluation loop.

Evaluation generates for the first `generate_examples` rows of each eval split, scores the texts with the
`lit_ft.generation.text_metrics` metrics, and keeps `sample_rows` prompt / reference / prediction rows for the sample
tables; prediction generates for every row. A subclass builds the model, names its prompt field, and adds its own scores
(`update_scores` for per-token ones on every row, `score_generations` for those that need the generated text).

A batch of a generative task's data carries `prompt_ids` (token ids generation starts from, unpadded), `prompt`
(their text, shown in samples and records), `ROW` (every batch has it: each row's place in its split), and
`references` (a list of reference texts per row) where the split has targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import Metric, MetricCollection
from transformers import GenerationConfig

from lit_ft.domains import NonNegativeInt, PositiveInt
from lit_ft.errors import UserError
from lit_ft.generation.decoding import decoding_settings, generate, inert_flags
from lit_ft.generation.text_metrics import TEXT_METRICS, GenerationMetrics, text_metric
from lit_ft.rows import ROW
from lit_ft.task import Batch, Task

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule

# options renamed when seq2seq and sft took one vocabulary: old name -> its place now
RENAMED = {"num_beams": ("generate_kwargs", "num_beams"), "num_samples": ("sample_rows", None)}


class GenerationTask(Task):
    """Base of tasks whose predictions are generated text.

    Args:
        info: What the data tells the model.
        metric_names: The metrics of evaluation: `lit_ft.generation.text_metrics.TEXT_METRICS` names plus the task's own
            `extra_metrics`.
        monitor: Metric that checkpointing and early stopping watch.
        generate_examples: Generate for the first this many rows of each eval split (file order); null: all.
        max_new_tokens: Longest generated output, in tokens.
        generate_kwargs: Further `model.generate` arguments (`num_beams`, `do_sample`, `temperature`, ...); greedy
            decoding by default.
        sample_rows: Prompt / reference / prediction rows logged after each eval epoch.
        use_stemmer: Porter-stem words before ROUGE matching.
    """

    prompt_field = "prompt"  # the name of the prompt in sample rows and prediction records
    extra_metrics: tuple[str, ...] = ()
    tokenizer: Any

    def __init__(
        self,
        info: dict[str, Any],
        metric_names: list[str],
        monitor: str,
        generate_examples: NonNegativeInt | None = None,
        max_new_tokens: PositiveInt = 128,
        generate_kwargs: dict[str, Any] | None = None,
        sample_rows: NonNegativeInt = 4,
        use_stemmer: bool = True,
    ) -> None:
        super().__init__(info)
        known = (*TEXT_METRICS, *self.extra_metrics)
        unknown = [n for n in metric_names if n not in known]
        if unknown:
            raise UserError(f"unknown {self.name} metrics {unknown} in model.task_options.metrics; choose from "
                            f"{list(known)}")
        for key, value in {"generate_examples": generate_examples, "max_new_tokens": max_new_tokens}.items():
            if value is not None and value < (0 if key == "generate_examples" else 1):
                raise UserError(f"model.task_options.{key} must be positive, got {value}")
        self.metric_names = list(metric_names)
        self._monitor = monitor
        self.generate_examples = generate_examples
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = dict(generate_kwargs or {})
        self.sample_rows = sample_rows
        self.use_stemmer = use_stemmer

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options under their earlier names (`num_beams`, `num_samples`) moved to their places, with a warning."""
        out = dict(options)
        for old, (new, key) in RENAMED.items():
            if old not in out:
                continue
            value = out.pop(old)
            place = f"{new}.{key}" if key else new
            rank_zero_warn(f"model.task_options.{old} is now model.task_options.{place}; read it as that")
            if key:
                out[new] = {key: value, **(out.get(new) or {})}
            else:
                out.setdefault(new, value)
        return out

    # ---- metrics -------------------------------------------------------------------------------
    def metrics(self) -> MetricCollection:
        found: dict[str, Metric | MetricCollection] = dict(self.score_metrics())
        for name in self.metric_names:
            found[name] = self.extra_metric(name) if name in self.extra_metrics else text_metric(name, self.use_stemmer)
        return GenerationMetrics(found)

    def score_metrics(self) -> dict[str, Metric]:
        """Metrics computed on every eval row without generating (perplexity); none by default."""
        return {}

    def extra_metric(self, name: str) -> Metric:
        """The task's own generation metric `name` (one of `extra_metrics`)."""
        raise NotImplementedError(name)

    def update_scores(self, metrics: MetricCollection, batch: Batch, outputs: Any) -> None:
        """Update `score_metrics` with the batch's forward outputs; nothing by default."""

    def score_generations(self, metrics: MetricCollection, batch: Batch, rows: list[int], texts: list[str]) -> None:
        """Update the task's `extra_metrics` with the texts generated for `rows` of the batch; nothing by default."""

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        self.update_scores(metrics, batch, outputs)
        limit = self.generate_examples
        rows = [i for i, p in enumerate(batch[ROW]) if limit is None or p < limit]
        if not rows or not self.metric_names:
            return
        texts = self.generate(model, [batch["prompt_ids"][i] for i in rows])
        references = [batch["references"][i] for i in rows]
        for name in self.metric_names:
            if name not in self.extra_metrics:
                metrics[name].update(texts, references)
        self.score_generations(metrics, batch, rows, texts)
        # each sample keeps its row until shown, so the table holds the split's first rows in input order
        samples = [{ROW: batch[ROW][i], **self._record(batch, i, text)} for i, text in zip(rows, texts, strict=True)]
        cast(GenerationMetrics, metrics).keep(samples, self.sample_rows)

    def samples(self, metrics: MetricCollection) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != ROW} for row in cast(GenerationMetrics, metrics).samples]

    def monitor(self) -> str:
        return self._monitor

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, model: nn.Module, prompts: list[list[int]]) -> list[str]:
        """Generated texts for prompts given as token ids (batched, the task's decoding settings)."""
        return generate(model, self.tokenizer, prompts, self.max_new_tokens, **self.generate_kwargs)

    def chat_prompt_ids(self, messages: list[dict[str, Any]], datamodule: TaskDataModule) -> list[int]:
        """The token ids `lit_ft serve`'s `/v1/chat/completions` generates from, for a conversation that ends with a
        user turn. By default its last user turn, encoded as the data module encodes a predict row from a text
        (`Task.serve_rows`): a task trained on single inputs (seq2seq) sees no history. Chat-trained tasks
        render the whole conversation with their chat template instead."""
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not users or not isinstance(users[-1], str):
            raise UserError("the conversation has no user turn with text content; end it with "
                            '{"role": "user", "content": "..."}')
        features = datamodule.request_features(self.serve_rows([users[-1]], datamodule))
        return list(features[0]["prompt_ids"])

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        texts = self.generate(model, batch["prompt_ids"])
        return [{"id": batch["id"][i], **self._record(batch, i, text)} for i, text in enumerate(texts)]

    def _record(self, batch: Batch, i: int, text: str) -> dict[str, Any]:
        record: dict[str, Any] = {self.prompt_field: batch["prompt"][i]}
        references = batch.get("references")
        if references is not None and references[i]:
            record["reference"] = references[i][0] if len(references[i]) == 1 else references[i]
        return {**record, "prediction": text}

    def export_extras(self, out_dir: Path) -> None:
        """Make `generate()` and `pipeline()` on the export decode as evaluation and predict did: the settings of
        `lit_ft.generation.decoding.decoding_settings` (greedy unless `generate_kwargs` say otherwise, `max_new_tokens`,
        stop and pad tokens) over the model's own generation config, which may have come with sampling on."""
        try:
            config = GenerationConfig.from_pretrained(out_dir)
        except OSError:
            config = GenerationConfig()
        config.update(**decoding_settings(config, self.tokenizer, self.max_new_tokens, **self.generate_kwargs))
        for key in inert_flags(config):
            setattr(config, key, None)
        config.save_pretrained(out_dir)

    def model_card(self, model_id: str, export_dir: Path) -> list[tuple[str, str]]:
        """The usage section, and the decoding settings the export's `generation_config.json` holds."""
        config = {k: v for k, v in GenerationConfig.from_pretrained(export_dir).to_diff_dict().items()
                  if not k.startswith("_") and k != "transformers_version"}
        mode = "sampling" if config.get("do_sample") else f"beam search ({config['num_beams']} beams)" \
            if (config.get("num_beams") or 1) > 1 else "greedy decoding"
        text = (f"lit_ft evaluated and predicted with {mode}, at most {config.get('max_new_tokens')} new tokens, "
                f"stopping at token ids {config.get('eos_token_id')} and padding with {config.get('pad_token_id')}; "
                "`generation_config.json` holds these settings, so `generate()` and pipelines decode the same "
                "way with no arguments (lit_ft's predictions are the new text with the whitespace around it "
                f"stripped):\n\n```json\n{json.dumps(config, indent=2, sort_keys=True)}\n```")
        return [*super().model_card(model_id, export_dir), ("Decoding", text)]
