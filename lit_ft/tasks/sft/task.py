"""The `sft` task: causal-LM supervised fine-tuning, with perplexity and generation metrics in evaluation."""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from transformers import AutoModelForCausalLM

from lit_ft.backbone import load_tokenizer
from lit_ft.errors import UserError
from lit_ft.task import Batch, Task
from lit_ft.tasks.sft.data import IGNORE, POSITION, SFTData
from lit_ft.tasks.sft.generate import extract_code, generate
from lit_ft.text_metrics import TEXT_METRICS, GenerationMetrics, text_metric

PASS_AT_1 = "pass@1"
ALIASES = {"pass_at_1": PASS_AT_1}


class Perplexity(Metric):
    """exp of the mean token loss over all trained tokens of the epoch (not the mean of per-batch values)."""

    full_state_update = False
    higher_is_better = False
    nll: torch.Tensor
    tokens: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("nll", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, mean_loss: torch.Tensor, tokens: torch.Tensor) -> None:
        self.nll += mean_loss.double() * tokens
        self.tokens += tokens

    def compute(self) -> torch.Tensor:
        return torch.exp(self.nll / self.tokens.clamp(min=1)).float()


class SFTTask(Task):
    """Causal-LM fine-tuning with `AutoModelForCausalLM` (Llama, Qwen, Mistral, GPT-2, ...).

    Args:
        info: What the data tells the model (nothing for this task).
        metrics: Generation metrics computed on the eval subset: text metrics of `lit_ft.text_metrics`
            (`rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `bleu`, `chrf`, `exact_match`) and `pass@1` (runs the
            generated code against the data's `tests_column` in `lit_ft.sandbox`). Empty: perplexity only.
        generate_examples: Generate for the first this many rows of each eval split (file order); null: all.
        max_new_tokens: Longest generated continuation.
        generate_kwargs: Further `model.generate` arguments (`do_sample`, `num_beams`, ...); greedy by default.
        sample_rows: Generated prompt / reference / prediction rows logged per eval epoch.
        code_timeout: Seconds each program may run for `pass@1`.
        code_sandbox: How `pass@1` isolates generated code: `auto` (namespaces, else a separate user as root, else
            an error), `namespaces`, `user`, or `unsafe` (your own user, no isolation: opt in only; docs/sandbox.md).
        monitor: Metric that checkpointing and early stopping watch (default: perplexity, lower is better).
    """

    name = "sft"
    datamodule = SFTData
    pipeline_tag = "text-generation"
    peft_task_type = "CAUSAL_LM"
    throughput_unit = "tokens"

    def __init__(
        self,
        info: dict[str, Any],
        metrics: list[str] | None = None,
        generate_examples: int | None = 32,
        max_new_tokens: int = 128,
        generate_kwargs: dict[str, Any] | None = None,
        sample_rows: int = 16,
        code_timeout: float = 10.0,
        code_sandbox: Literal["auto", "namespaces", "user", "unsafe"] = "auto",
        monitor: str | None = None,
    ) -> None:
        super().__init__(info)
        names = ["rougeL", "bleu", "exact_match"] if metrics is None else [ALIASES.get(m, m) for m in metrics]
        unknown = [n for n in names if n not in (*TEXT_METRICS, PASS_AT_1)]
        if unknown:
            raise UserError(f"unknown sft metrics {unknown}; choose from {[*TEXT_METRICS, PASS_AT_1]}")
        self.metric_names = names
        self.generate_examples = generate_examples
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = dict(generate_kwargs or {})
        self.sample_rows = sample_rows
        self.code_timeout = code_timeout
        self.code_sandbox = code_sandbox
        self._monitor = ALIASES.get(monitor or "perplexity", monitor or "perplexity")

    def build_model(self, backbone: str) -> nn.Module:
        self.tokenizer = load_tokenizer(backbone)
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(backbone)
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        return model

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        return model(**batch["inputs"]) if "labels" in batch["inputs"] else None  # predict: generation only

    def metrics(self) -> MetricCollection:
        found: dict[str, Metric | MetricCollection] = {"perplexity": Perplexity()}
        for name in self.metric_names:
            found[name] = self._pass_at_one() if name == PASS_AT_1 else text_metric(name)
        return GenerationMetrics(found)

    def _pass_at_one(self) -> Metric:
        from lit_ft.code_eval import PassAtOne

        return PassAtOne(timeout=self.code_timeout, mode=self.code_sandbox)

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        labels = batch["inputs"]["labels"]
        metrics["perplexity"].update(outputs.loss.detach(), (labels[:, 1:] != IGNORE).sum())
        limit = self.generate_examples
        chosen = [i for i, p in enumerate(batch[POSITION]) if limit is None or p < limit]
        if not chosen or not self.metric_names:
            return
        texts = self._generate(model, [batch["prompt_ids"][i] for i in chosen])
        references = [batch["reference"][i] for i in chosen]
        for name in self.metric_names:
            if name != PASS_AT_1:
                metrics[name].update(texts, references)
        if PASS_AT_1 in self.metric_names:
            if "tests" not in batch:
                raise UserError("metric pass@1 needs test asserts: set data.tests_column (for MBPP: test_list)")
            metrics[PASS_AT_1].update([extract_code(t) for t in texts], [batch["tests"][i] for i in chosen])
        rows = [
            {"prompt": batch["prompt"][i], "reference": r, "prediction": t}
            for i, r, t in zip(chosen, references, texts, strict=True)
        ]
        cast(GenerationMetrics, metrics).keep(rows, self.sample_rows)

    def _generate(self, model: nn.Module, prompts: list[list[int]]) -> list[str]:
        return generate(model, self.tokenizer, prompts, self.max_new_tokens, **self.generate_kwargs)

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        texts = self._generate(model, batch["prompt_ids"])
        return [
            {"id": i, "prompt": p, "prediction": t} for i, p, t in zip(batch["id"], batch["prompt"], texts, strict=True)
        ]

    def samples(self, metrics: MetricCollection) -> list[dict[str, Any]]:
        return list(cast(GenerationMetrics, metrics).samples)

    def monitor(self) -> str:
        return self._monitor
