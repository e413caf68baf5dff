"""FineTuner: the one LightningModule, a pretrained backbone with a task head, driven by a task plugin."""

from __future__ import annotations

import warnings
from typing import Any, Literal, cast

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MeanMetric, MetricCollection

from lit_ft.adapters.lightning import attached_trainer
from lit_ft.attention import FLASH, Attention, flash_usable
from lit_ft.backbone import locate_backbone
from lit_ft.compile import CompiledForward
from lit_ft.datamodule import DEFAULT_BACKBONE, TaskDataModule
from lit_ft.domains import NonNegativeFloat, NonNegativeInt, PositiveFloat, plain_numbers
from lit_ft.errors import UserError
from lit_ft.freeze import freeze
from lit_ft.loading import LoadOptions
from lit_ft.lora import LoraSettings, apply_lora, exportable, is_adapter_model
from lit_ft.monitor import Mode, monitor_mode
from lit_ft.neftune import add_embedding_noise
from lit_ft.optim import AdamW, Schedule, clip_gradients, decay_groups, unscale_outside, warmup_schedule, warmup_steps
from lit_ft.quantization import QuantizationSettings, as_settings, bnb_config, check_quantization, prepare_for_adapters
from lit_ft.quiet import restoring
from lit_ft.registry import get_task
from lit_ft.rows import with_rows
from lit_ft.sampler import is_padding
from lit_ft.samples import log_samples
from lit_ft.task import Batch, Task, check_build_model
from lit_ft.task_options import check_task_options
from lit_ft.weights_dtype import weights_dtype

Stage = Literal["train", "val", "test"]
EVAL_STAGES: tuple[Stage, ...] = ("val", "test")
NOT_MEASURED = torch.tensor(float("nan"))  # the logged value of a metric no eval row updated (shown as `-`)


class FineTuner(LightningModule):
    """Fine-tunes a pretrained Hugging Face model on any registered task.

    Everything needed to rebuild the model without the data (task, backbone, the data's `info` such as label
    names, task options) is saved in the checkpoint's hyperparameters.

    Args:
        task: Registered task plugin name (`lit_ft tasks` lists them).
        backbone: Hub id or local directory of the pretrained model; the tokenizer follows it.
        task_options: Task settings passed to the plugin (for example `threshold` for multi-label).
        info: What the model knows of the data (label names, ...); filled from the data at setup when empty.
        learning_rate: Peak learning rate (set on every parameter group).
        weight_decay: Decoupled weight decay for weight matrices; biases and norm weights get none.
        optimizer: Optimizer factory taking parameter groups (fused AdamW by default, see `lit_ft.optim.AdamW`).
        warmup: Warmup length: a fraction of all optimizer steps when below 1, else a number of steps.
        schedule: Decay after warmup, stepped per optimizer step.
        freeze_backbone: Train only the task head.
        freeze_layers: Freeze the embeddings and this many lowest transformer layers.
        lora: Train LoRA adapters instead of the full model (needs `peft`); checkpoints then hold only the
            trainable weights.
        gradient_checkpointing: Keep only each transformer layer's input for backward and recompute the rest
            (Transformers' `gradient_checkpointing_enable`, non-reentrant): less activation memory, slower steps.
        quantization: QLoRA: load the frozen base in 4 bits through bitsandbytes (needs `model.lora` and a CUDA
            GPU; `pip install 'lit_ft[qlora]'`).
        compile: Run the training and evaluation forward passes through `torch.compile` (Inductor; a C++
            compiler on CPUs, triton on GPUs): the first steps compile, later ones run faster. Checkpoints and
            exports keep the plain parameter names; generation runs uncompiled.
        attn_implementation: Attention kernels the backbone loads with: `sdpa`, `eager` or `flash_attention_2`
            (a CUDA GPU, `pip install flash-attn` and fp16/bf16 compute); unset, Transformers' default (sdpa where
            the architecture has it). Packed SFT batches take the layout these kernels attend best with.
        neftune_noise_alpha: NEFTune: while training, add uniform noise of at most alpha / sqrt(length * width)
            to the input embeddings (5 is the paper's usual value); evaluation and prediction see none.
    """

    def __init__(
        self,
        task: str = "classification",
        backbone: str = DEFAULT_BACKBONE,
        task_options: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        learning_rate: PositiveFloat = 5e-5,
        weight_decay: NonNegativeFloat = 0.01,
        optimizer: OptimizerCallable = AdamW,
        warmup: NonNegativeFloat = 0.0,
        schedule: Schedule = "linear",
        freeze_backbone: bool = False,
        freeze_layers: NonNegativeInt = 0,
        lora: LoraSettings | None = None,
        gradient_checkpointing: bool = False,
        quantization: QuantizationSettings | None = None,
        compile: bool = False,
        attn_implementation: Attention | None = None,
        neftune_noise_alpha: PositiveFloat | None = None,
    ) -> None:
        super().__init__()
        check_quantization(quantization, lora)
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.model: nn.Module | None = None
        self.compiled_forward = CompiledForward()
        if info is not None:
            with restoring():  # the checkpoint brings the head's weights: no "newly initialised" report
                self.build(info)

    # ---- building ------------------------------------------------------------------------------
    def build(self, info: dict[str, Any], meta: bool = False) -> None:
        """Build the plugin, the backbone with its head, and one metric collection per eval stage.

        Args:
            info: What the model knows of the data (label names, ...).
            meta: Build on the `meta` device from the backbone's config, unquantized (`lit_ft estimate`).
        """
        task_cls = get_task(self.hparams["task"])
        check_build_model(task_cls)
        # checked again here: options saved in a checkpoint (or given to FineTuner in Python) skip the CLI's preflight
        options = check_task_options(task_cls, task_cls.upgrade_options(self.hparams["task_options"] or {}))
        try:
            self.plugin: Task = task_cls(info, **options)
        except TypeError as err:
            raise UserError(f"model.task_options for task '{self.hparams['task']}': {err}") from err
        self.hparams["info"] = info
        quantization = None if meta else as_settings(self.hparams.get("quantization"))
        load = self._load_options(quantization, meta)
        self.model = self.plugin.build_model(locate_backbone(self.hparams["backbone"]), load)
        freeze(self.model, self.hparams["freeze_backbone"], self.hparams["freeze_layers"])
        if self.hparams.get("neftune_noise_alpha") is not None:
            add_embedding_noise(self.model, float(self.hparams["neftune_noise_alpha"]))
        if quantization is not None:
            self.model = prepare_for_adapters(self.model, bool(self.hparams.get("gradient_checkpointing")))
        if self.hparams.get("gradient_checkpointing"):
            enable_checkpointing(self.model)
        if self.hparams["lora"] is not None:
            self.model = apply_lora(self.model, _as_lora(self.hparams["lora"]), self.plugin.peft_task_type)
        self.model.train()  # from_pretrained returns eval mode, and Lightning keeps submodule modes
        self.metrics = nn.ModuleDict({stage: self.plugin.metrics() for stage in EVAL_STAGES})
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in EVAL_STAGES})

    def _load_options(self, quantization: QuantizationSettings | None, meta: bool) -> LoadOptions:
        """The run's loading options: the precision's weights dtype (QLoRA: its compute dtype), the 4-bit config,
        the attention kernels."""
        trainer = attached_trainer(self)
        precision = trainer.precision if trainer is not None else None
        if quantization is None:
            return LoadOptions(dtype=weights_dtype(precision), attn_implementation=self._attention(), meta=meta)
        config = bnb_config(quantization)
        return LoadOptions(dtype=config.bnb_4bit_compute_dtype, quantization_config=config,
                           attn_implementation=self._attention())

    def _attention(self) -> str | None:
        """The attention implementation to load with. A checkpoint rebuilt outside a run (`lit_ft export`) where
        flash-attention cannot load takes Transformers' default: the weights do not depend on the kernels."""
        chosen = self.hparams.get("attn_implementation")
        if chosen == FLASH and attached_trainer(self) is None and not flash_usable():
            return None
        return cast(str | None, chosen)

    def setup(self, stage: str) -> None:
        self.bind_data()

    def bind_data(self) -> None:
        """Build from the data's info, or hand the saved info to the data; idempotent.

        Callbacks that need the task (the checkpoint's monitor) call this from their own `setup`, which
        Lightning runs before the module's.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, TaskDataModule):
            if self.model is None:
                raise UserError("FineTuner needs a lit_ft TaskDataModule (data.class_path) or a saved `info`")
            return
        tasks = datamodule.data_tasks()
        if tasks and self.hparams["task"] not in tasks:
            raise UserError(
                f"model.task is '{self.hparams['task']}' but the data module {type(datamodule).__name__} is for task "
                f"{' or '.join(repr(t) for t in tasks)}; make them agree"
            )
        if self.model is None:
            self.build(datamodule.info)
        else:
            datamodule.use_info(self.hparams["info"])
        self.plugin.bind_data(datamodule)

    def on_train_start(self) -> None:
        # Lightning logs the hyperparameters as given to __init__ (before this hook); `info` came from the data later
        for logger in self.loggers:
            logger.log_hyperparams({"info": self.hparams["info"]})

    def monitor(self) -> tuple[str, Mode]:
        """The logged key of the task's primary validation metric, and its direction (the metric's own)."""
        name = self._plugin().monitor()
        return f"val/{name}", self.monitor_mode(f"val/{name}")

    def monitor_mode(self, key: str) -> Mode:
        """Whether a logged `val/<name>` key is minimised or maximised, from the metric's `higher_is_better`."""
        stage, _, name = key.partition("/")
        if key == "train/loss":
            return "min"
        if stage != "val" or not name:
            raise UserError(f"monitor '{key}': lit_ft knows the direction of val/<metric> keys and train/loss; "
                            "give the metric as val/<name>, or set the callback's mode (min or max)")
        self._plugin()  # builds the model (and its metrics) from the data if that has not happened yet
        return monitor_mode(name, self._metrics("val"), self.hparams["task"])

    def _plugin(self) -> Task:
        if self.model is None:
            self.bind_data()
        return self.plugin

    # ---- steps ---------------------------------------------------------------------------------
    def _model(self) -> nn.Module:
        assert self.model is not None, "the model is not built yet: it is built from the data's info at setup"
        return self.model

    def _metrics(self, stage: Stage) -> MetricCollection:
        return cast(MetricCollection, self.metrics[stage])

    def _loss(self, stage: Stage) -> MeanMetric:
        return cast(MeanMetric, self.losses[stage])

    def _forward(self, batch: Batch) -> Any:
        model = self._model()
        if self.hparams.get("compile"):
            model = self.compiled_forward(model)
        return self.plugin.forward(model, batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.plugin.loss(self._forward(batch), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["id"]))
        self._log_step(self.trainer.global_step + 1)  # the optimizer step this batch completes
        return loss

    def _eval_step(self, batch: Batch, stage: Stage) -> Any:
        outputs = self._forward(batch)  # padding batches too: sharded models need every rank in each forward
        if is_padding(batch):  # a rank with fewer examples repeats one to keep step; it counts nowhere
            return outputs
        weight = self.plugin.loss_weight(batch)  # examples, or the tokens a token-level loss averages
        if weight:
            self._loss(stage).update(self.plugin.loss(outputs, batch), weight=weight)
        self.plugin.update_metrics(self._metrics(stage), self._model(), batch, outputs)
        return outputs

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> Any:
        """Test metrics; also the prediction records when the task makes them from the same forward pass
        (`Task.predictions_at_test`), which `PredictionWriter` writes to `test_predictions.jsonl`."""
        outputs = self._eval_step(batch, "test")
        if not self.plugin.predictions_at_test or is_padding(batch):
            return None
        return with_rows(self.plugin.predictions(self._model(), batch, outputs), batch, self.plugin.name)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        outputs = self._forward(batch)
        if is_padding(batch):
            return []
        return with_rows(self.plugin.predictions(self._model(), batch, outputs), batch, self.plugin.name)

    def _log_epoch(self, stage: Stage) -> None:
        # torchmetrics has already synced the states across processes: log the values as they are
        values = {f"{stage}/loss": self._loss(stage).compute()}
        metrics = self._metrics(stage)
        unmeasured = self._unmeasured(metrics)
        with warnings.catch_warnings():  # every process computes every metric (a sync each), measured or not
            warnings.filterwarnings("ignore", ".*was called before the ``update`` method.*")
            flat = flatten_metrics(metrics, stage)
        # not a 0 that was never measured; NaN keeps the key for a checkpoint monitor (the worst value to it)
        values.update({k: NOT_MEASURED if k.split("/")[1] in unmeasured else v for k, v in flat.items()})
        self.log_dict(values, sync_dist=False, prog_bar=False)
        self._log_step(self.trainer.global_step)
        rows = self.plugin.samples(self._metrics(stage))
        if rows:
            log_samples(self.trainer, f"{stage}/samples", rows)
        self._loss(stage).reset()
        self._metrics(stage).reset()

    def _log_step(self, step: int) -> None:
        """Give the loggers the step of what is logged now: the optimizer steps done, the number that checkpoint
        names (`step=N`), `metrics/*.json` and `samples/*_step<N>.jsonl` carry. Lightning takes a logged `step` as
        the row's step (`Trainer` logging); without it, it numbers a row by the batches stepped before the current
        one is counted, so a validation after 25 steps would land at step 24 (see docs/report.md). ModelCheckpoint
        names a file by a logged `step` too: the same number, as the trainer updates it only at stepped batches."""
        self.log("step", float(step), batch_size=1, sync_dist=False)

    def _unmeasured(self, metrics: MetricCollection) -> list[str]:
        """Metrics no process updated this epoch (generation metrics when no generated row was evaluated)."""
        named = list(metrics.items(keep_base=True, copy_state=False))
        counts = torch.tensor([float(m.update_count) for _, m in named], device=self.device)
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum")  # a generated row may be on another rank
        return [name for (name, _), count in zip(named, counts.tolist(), strict=True) if not count]

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch("val")
        else:
            self._loss("val").reset()
            self._metrics("val").reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def exportable_model(self, merge: bool = True) -> nn.Module:
        """The model to save as a Hugging Face directory (adapter models merge or stay adapters per `merge`)."""
        assert self.model is not None, "the model is not built yet"
        return exportable(self.model, merge)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Settings parsed into jsonargparse's restricted number types (`lit_ft.domains`) are saved as plain
        numbers: a checkpoint loads with weights_only=True, which refuses those classes. Runs after every other
        part of the checkpoint (hyperparameters, data settings, callback and optimizer states) is in place."""
        for key, value in checkpoint.items():
            if key != "state_dict":  # tensors only
                checkpoint[key] = plain_numbers(value)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """Adapter models save only their trainable weights (the base weights come from the backbone)."""
        state = super().state_dict(*args, **kwargs)
        if self.model is None or not is_adapter_model(self.model):
            return state
        prefix = kwargs.get("prefix", "")
        keep = {f"{prefix}{name}" for name, p in self.named_parameters() if p.requires_grad}
        return type(state)((k, v) for k, v in state.items() if k in keep or not k.startswith(f"{prefix}model."))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        adapter_only = self.model is not None and is_adapter_model(self.model)
        return super().load_state_dict(state_dict, strict=strict and not adapter_only, assign=assign)

    # ---- optimisation --------------------------------------------------------------------------
    def configure_gradient_clipping(
        self, optimizer: Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> Any:
        assert self.model is not None
        groups = decay_groups(self.model, self.hparams["weight_decay"])
        for group in groups:
            group["lr"] = self.hparams["learning_rate"]
        optimizer = unscale_outside(self.optimizer(groups))
        total = int(self.trainer.estimated_stepping_batches)
        warmup = warmup_steps(self.hparams["warmup"], total)
        scheduler = warmup_schedule(optimizer, warmup, total, self.hparams["schedule"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def enable_checkpointing(model: nn.Module) -> None:
    """Activation checkpointing per transformer layer; non-reentrant, so frozen inputs (LoRA) still get gradients."""
    enable: Any = getattr(model, "gradient_checkpointing_enable", None)
    if enable is None or not getattr(model, "supports_gradient_checkpointing", False):
        raise UserError(f"model.gradient_checkpointing: {type(model).__name__} does not support gradient "
                        "checkpointing; set model.gradient_checkpointing false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Transformers 5 also names it activation_checkpointing_enable
        enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _as_lora(value: LoraSettings | dict[str, Any]) -> LoraSettings:
    return value if isinstance(value, LoraSettings) else LoraSettings(**value)


def flatten_metrics(metrics: MetricCollection, stage: str) -> dict[str, torch.Tensor]:
    """Computed metrics as `stage/name` scalars; dict-valued metrics (per class) become `stage/name/key`."""
    flat: dict[str, torch.Tensor] = {}
    for name, value in metrics.compute().items():
        if isinstance(value, dict):
            flat.update({f"{stage}/{name}/{k}": v for k, v in value.items()})
        else:
            flat[f"{stage}/{name}"] = value
    return flat
