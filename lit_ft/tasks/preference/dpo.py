"""The `dpo` task: DPO-family preference objectives on a causal LM.

A step runs the chosen and rejected sequences of its pairs through the policy in ONE forward pass
(`lit_ft.tasks.preference.logps`), gets the reference's log-probabilities (`lit_ft.tasks.preference.reference_model`:
precomputed, the policy with its LoRA adapters disabled, or a frozen copy), and takes the mean of the objective
(`lit_ft.tasks.preference.losses`) over the pairs. The trained model is a plain causal LM: predict generates from
the prompts (greedy by default) and an export loads in `pipeline("text-generation")`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torchmetrics import MetricCollection
from transformers import AutoModelForCausalLM

from lit_ft.backbone import load_tokenizer, pad_with_eos
from lit_ft.domains import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from lit_ft.errors import UserError
from lit_ft.generation.decoding import generate, write_generation_config
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.lora import is_adapter_model
from lit_ft.task import Batch, Task
from lit_ft.tasks.preference.data import PreferenceData
from lit_ft.tasks.preference.logps import pair_forward
from lit_ft.tasks.preference.losses import (
    LENGTH_NORMALISED,
    REFERENCE_FREE,
    LossType,
    PairLogps,
    PairLosses,
    Settings,
    pair_losses,
)
from lit_ft.tasks.preference.metrics import LogProbs, Rewards
from lit_ft.tasks.preference.precompute import precompute, reference_key
from lit_ft.tasks.preference.reference_model import Reference, device_of

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule


@dataclass(frozen=True)
class PairOutputs:
    """A step's pairs: the policy's log-probs, the objective per pair, and ORPO's chosen NLL."""

    logps: PairLogps
    losses: PairLosses
    nll: torch.Tensor | None


class DPOTask(Task):
    """Preference tuning of a causal LM (`AutoModelForCausalLM`) on pairs of a chosen and a rejected answer.

    Args:
        info: What the data tells the model (nothing for this task).
        loss_type: The objective, named as TRL names it: `sigmoid` (DPO), `ipo`, `hinge`, `robust` (DPO under
            `label_smoothing` label noise), and the reference-free `simpo` (TRL's `CPOTrainer` with
            `loss_type: simpo`, `cpo_alpha: 0`) and `orpo` (TRL's `ORPOTrainer`), which need no reference model.
        beta: The objectives' temperature: the KL penalty's strength (DPO), the regularisation tau (IPO), the
            reward scale (SimPO), the odds-ratio weight lambda (ORPO).
        label_smoothing: The assumed rate of flipped preference labels (`robust`, below 0.5; also `simpo`'s
            conservative variant).
        simpo_gamma: SimPO's target reward margin.
        precompute_ref_log_probs: Compute the reference log-probabilities of the train and validation pairs once
            before training and keep them with the tokenized data; no reference model is held while training.
        disable_dropout: Set every dropout of the policy to 0 (as TRL does by default): the policy's and the
            reference's log-probabilities then differ by the weights only.
        monitor: What checkpointing and early stopping watch: the validation reward accuracy
            (`rewards/accuracies`) or the validation loss (`loss`).
        max_new_tokens: Longest generated answer at predict.
        generate_kwargs: Further `model.generate` arguments at predict (`do_sample`, `num_beams`, ...); greedy by
            default.
    """

    name = "dpo"
    datamodule = PreferenceData
    pipeline_tag = "text-generation"
    peft_task_type = "CAUSAL_LM"
    sequences_per_example = 2
    tokenizer: Any

    def __init__(
        self,
        info: dict[str, Any],
        loss_type: LossType = "sigmoid",
        beta: PositiveFloat = 0.1,
        label_smoothing: Probability = 0.0,
        simpo_gamma: NonNegativeFloat = 0.5,
        precompute_ref_log_probs: bool = False,
        disable_dropout: bool = True,
        monitor: Literal["rewards/accuracies", "loss"] = "rewards/accuracies",
        max_new_tokens: PositiveInt = 128,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(info)
        if label_smoothing >= 0.5:
            raise UserError(f"model.task_options.label_smoothing is {label_smoothing}: it is the rate of flipped "
                            "labels and must be below 0.5; set a smaller value")
        if label_smoothing and loss_type not in ("robust", "simpo"):
            raise UserError(f"model.task_options.label_smoothing is {label_smoothing} but loss_type {loss_type} does "
                            "not use it (as in TRL 1.16, only robust and simpo do); set loss_type robust, or drop "
                            "label_smoothing")
        self.loss_type = loss_type
        self.settings = Settings(beta=float(beta), label_smoothing=float(label_smoothing),
                                 simpo_gamma=float(simpo_gamma))
        self.precompute = precompute_ref_log_probs and loss_type not in REFERENCE_FREE
        self.disable_dropout = disable_dropout
        self._monitor = monitor
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = dict(generate_kwargs or {})
        self.reference: Reference | None = None

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        self.tokenizer = pad_with_eos(load_tokenizer(backbone))
        model: Any = load_pretrained(AutoModelForCausalLM, backbone, load)
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        if self.disable_dropout:
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0
        if self.loss_type not in REFERENCE_FREE:
            self.reference = Reference(lambda: load_pretrained(AutoModelForCausalLM, backbone, load))
            self._reference_key = reference_key(backbone, load)
        return model

    # ---- training ------------------------------------------------------------------------------
    def forward(self, model: nn.Module, batch: Batch) -> PairOutputs | None:
        if batch["inputs"]["input_ids"].size(0) != 2 * len(batch["id"]):
            return None  # predict rows (no pairs): generation only
        policy = pair_forward(model, batch, chosen_nll=self.loss_type == "orpo")
        reference = None if self.reference is None else self.reference.logps(model, batch)
        losses = pair_losses(self.loss_type, policy.logps, reference, self.settings)
        logps = policy.logps.averaged() if self.loss_type in LENGTH_NORMALISED else policy.logps
        return PairOutputs(logps, losses, policy.chosen_nll)

    def loss(self, outputs: PairOutputs, batch: Batch) -> torch.Tensor:
        loss = outputs.losses.losses.mean()
        return loss if outputs.nll is None else outputs.nll + loss

    def before_fit(self, model: nn.Module, datamodule: TaskDataModule) -> None:
        """With `precompute_ref_log_probs`: the reference log-probs of the train and validation pairs, computed
        (or found in the cache) now; the frozen copy is dropped after."""
        if not self.precompute or self.reference is None:
            return
        reference = self.reference
        with torch.no_grad():
            precompute(datamodule, lambda batch: reference.logps(model, batch), device_of(model), self._reference_key)
        reference.release()

    def frozen_parameters(self, model: nn.Module) -> int:
        """The frozen copy's weights: none for the reference-free objectives, precomputed log-probs or LoRA."""
        if self.reference is None or self.precompute or is_adapter_model(model):
            return 0
        return sum(p.numel() for p in model.parameters())

    # ---- metrics -------------------------------------------------------------------------------
    def metrics(self) -> MetricCollection:
        return MetricCollection({"rewards": Rewards(), "logps": LogProbs()})

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        metrics["rewards"].update(outputs.losses)
        metrics["logps"].update(outputs.logps)

    def monitor(self) -> str:
        return self._monitor

    # ---- predict and export --------------------------------------------------------------------
    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        prompts = batch["prompt_ids"]
        texts = generate(model, self.tokenizer, prompts, self.max_new_tokens, **self.generate_kwargs)
        return [{"id": batch["id"][i], "prompt": self.tokenizer.decode(prompts[i], skip_special_tokens=True),
                 "prediction": text} for i, text in enumerate(texts)]

    def export_extras(self, out_dir: Path) -> None:
        """The export's `generation_config.json` decodes as predict did (greedy unless `generate_kwargs` say)."""
        write_generation_config(out_dir, self.tokenizer, self.max_new_tokens, **self.generate_kwargs)
