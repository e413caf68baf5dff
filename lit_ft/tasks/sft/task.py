"""The `sft` task: causal-LM supervised fine-tuning, with perplexity and generation metrics in evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from transformers import AutoModelForCausalLM

from lit_ft.backbone import load_tokenizer, pad_with_eos
from lit_ft.domains import NonNegativeInt, PositiveFloat, PositiveInt
from lit_ft.errors import UserError
from lit_ft.generation.decoding import extract_code
from lit_ft.generation.task import GenerationTask
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.packing.bins import packed_inputs
from lit_ft.task import Batch, label_tokens
from lit_ft.tasks.sft.data import IGNORE, SFTData

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule

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


class SFTTask(GenerationTask):
    """Causal-LM fine-tuning with `AutoModelForCausalLM` (Llama, Qwen, Mistral, GPT-2, ...).

    Args:
        info: What the data tells the model (nothing for this task).
        metrics: Generation metrics computed on the eval subset: text metrics of `lit_ft.generation.text_metrics`
            (`rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `bleu`, `chrf`, `exact_match`) and `pass@1` (runs the
            generated code against the data's `tests_column` in `lit_ft.generation.sandbox`). Empty: perplexity only.
        monitor: Metric that checkpointing and early stopping watch (default: perplexity, lower is better).
        generate_examples: Generate for the first this many rows of each eval split (file order); null: all.
        max_new_tokens: Longest generated continuation.
        generate_kwargs: Further `model.generate` arguments (`do_sample`, `num_beams`, ...); greedy by default.
        sample_rows: Generated prompt / reference / prediction rows logged per eval epoch.
        code_timeout: Seconds each program may run for `pass@1`.
        code_sandbox: How `pass@1` isolates generated code: `auto` (= `namespaces`, else an error), `namespaces`,
            or the unsafe modes `unsafe_user` (root: a uid of its own, network and world-readable files reachable)
            and `unsafe` (your own user, no isolation); docs/sandbox.md.
        allow_unsafe_sandbox: Let `code_sandbox` be `unsafe_user` or `unsafe` (refused otherwise).
    """

    name = "sft"
    datamodule = SFTData
    pipeline_tag = "text-generation"
    peft_task_type = "CAUSAL_LM"
    throughput_unit = "tokens"
    extra_metrics = (PASS_AT_1,)

    def __init__(
        self,
        info: dict[str, Any],
        metrics: list[str] | None = None,
        monitor: str | None = None,
        generate_examples: NonNegativeInt | None = 32,
        max_new_tokens: PositiveInt = 128,
        generate_kwargs: dict[str, Any] | None = None,
        sample_rows: NonNegativeInt = 16,
        code_timeout: PositiveFloat = 10.0,
        code_sandbox: Literal["auto", "namespaces", "unsafe_user", "unsafe"] = "auto",
        allow_unsafe_sandbox: bool = False,
    ) -> None:
        names = ["rougeL", "bleu", "exact_match"] if metrics is None else [ALIASES.get(m, m) for m in metrics]
        chosen = monitor or "perplexity"
        super().__init__(info, names, ALIASES.get(chosen, chosen), generate_examples, max_new_tokens,
                         generate_kwargs, sample_rows)
        self.code_timeout = code_timeout
        self.code_sandbox = code_sandbox
        self.allow_unsafe_sandbox = allow_unsafe_sandbox

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        self.tokenizer = pad_with_eos(load_tokenizer(backbone))
        model: Any = load_pretrained(AutoModelForCausalLM, backbone, load)
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        return model

    def serve_rows(self, inputs: list[Any], datamodule: TaskDataModule) -> dict[str, list[Any]]:
        """A text input is a user turn of a conversation when the model was trained on conversations (`format:
        chat`), else the prompt to complete; an object is a row, as by default."""
        data = cast(SFTData, datamodule)
        if data.format == "chat":
            inputs = [[{"role": "user", "content": v}] if isinstance(v, str) else v for v in inputs]
            inputs = [{data.chat_rows.messages_column: v} if isinstance(v, list) else v for v in inputs]
        return super().serve_rows(inputs, datamodule)

    def chat_prompt_ids(self, messages: list[dict[str, Any]], datamodule: TaskDataModule) -> list[int]:
        """The conversation through the chat template training rendered with (`SFTData.chat_prompt_ids`)."""
        return cast(SFTData, datamodule).chat_prompt_ids(messages)

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        if "labels" not in batch["inputs"]:
            return None  # predict: generation only
        if "row_tokens" in batch:  # packed rows, in the layout the model's attention keeps examples apart in
            return model(**packed_inputs(model, batch))
        return model(**batch["inputs"])

    def loss_weight(self, batch: Batch) -> int:
        return label_tokens(batch, shift=1)  # the causal LM's loss: a mean over the shifted trained tokens

    def score_metrics(self) -> dict[str, Metric]:
        return {"perplexity": Perplexity()}

    def update_scores(self, metrics: MetricCollection, batch: Batch, outputs: Any) -> None:
        labels = batch["inputs"]["labels"]
        metrics["perplexity"].update(outputs.loss.detach(), (labels[:, 1:] != IGNORE).sum())

    def extra_metric(self, name: str) -> Metric:
        from lit_ft.generation.code_eval import PassAtOne

        return PassAtOne(timeout=self.code_timeout, mode=self.code_sandbox, allow_unsafe=self.allow_unsafe_sandbox)

    def score_generations(self, metrics: MetricCollection, batch: Batch, rows: list[int], texts: list[str]) -> None:
        if PASS_AT_1 not in self.metric_names:
            return
        if "tests" not in batch:
            raise UserError("metric pass@1 needs test asserts: set data.tests_column (for MBPP: test_list)")
        metrics[PASS_AT_1].update([extract_code(t) for t in texts], [batch["tests"][i] for i in rows])
