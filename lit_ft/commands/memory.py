"""Peak training memory per device, estimated from a model's parameters and its transformer shape.

Four parts, each a plain formula (bytes):
- weights: every parameter at the precision's storage size (fp32 for `32-true` and the mixed precisions, 2 bytes
  for `bf16-true` / `16-true`);
- gradients: trainable parameters at the same size;
- optimizer state: AdamW's two moments per trainable parameter, in the parameter's dtype;
- activations: what autograd keeps for backward, per token, from `activation_bytes_per_token`.
QLoRA stores the frozen linear weights of the base in 4 bits: 0.5 byte per weight plus the quantization constants
(one fp32 absmax per 64 weights, or with double quantization an 8-bit one and an fp32 constant per 256 blocks).
Sharding divides the first three: FSDP and DeepSpeed stage 3 shard all of them across the devices, DeepSpeed
stage 2 shards gradients and optimizer state, DDP replicates everything. The sum is an upper bound of the step's
peak: gradients fill in as activations are freed during backward.

An evaluation batch after a step (the gradients still held) needs its forward's working memory instead of the
step's activations: one layer at a time, and a language-model head's logits with the loss's fp32 copies
(`evaluation_bytes_per_token`); the larger of the two counts.

A training process holds more than its step in host memory, and where the device is the CPU that is the device's
memory too: the process itself (interpreter, libraries, recipe, tokenizer; `lit_ft.commands.process_memory` measures
it in the estimating process) and the checkpoint buffer (`checkpoint_bytes`).

Activations (bytes per token per transformer layer, `d` bytes per activation value: 4 for `32-true`, 2 for the
`-true` half precisions, 3 for the mixed ones, whose autocast keeps matmul outputs in half precision and norms,
softmax and residuals in fp32), with hidden size h, intermediate size i, heads a, sequence length s:
- BERT-like blocks (LayerNorm, GELU MLP): d * (8h + 2i + a), plus d * 2h when hidden dropout is on and
  d * 3as when attention dropout is on (the attention probabilities, their dropout mask and output: dropout
  takes the math attention path, so the s x s matrix is kept);
- Llama-like blocks (RMSNorm, gated SiLU MLP, `gate_proj`): d * (10h + 4i + a) (fused attention keeps its output
  and log-sum-exp, not the s x s matrix);
- eager attention (`model.attn_implementation: eager`) keeps the s x s probabilities instead of the log-sum-exp:
  the `a` term becomes a * s in either block (with attention dropout, the d * 3as term already counts them);
- embeddings and the last norm: d * 3h per token; a language-model head: 16 bytes per vocabulary entry per token
  (four fp32 (batch, seq, vocab) tensors are alive as backward starts: the logits, the loss's log-probabilities
  and the gradients of both);
- backward's working memory: the gradients flowing through the layer being differentiated, about one layer's
  activations, added once;
- LoRA: each adapted linear layer adds (d + 1) bytes per input feature (the adapter's dropout output and mask);
- gradient checkpointing: each layer keeps only its input (d * h), and backward recomputes one layer at a time, so
  one layer's full activations are added once.
The constants come from counting the bytes autograd saves (`torch.autograd.graph.saved_tensors_hooks`, storages
counted once) for BERT and Llama models of several widths on CPU with PyTorch 2.x and Transformers 5: they match
to within 1% for the shapes measured (the `a` term is the attention's log-sum-exp); the head and working-memory
terms come from the peak resident memory of training steps, which the saved tensors alone undershoot. They are
Korthikanti et al.'s per-layer accounting ("Reducing Activation Recomputation in Large Transformer Models",
2022: 34sbh + 5as^2b bytes in fp16) redone for what these implementations save. `tests/test_estimate.py` checks
the whole estimate against the peak resident memory of real training steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lit_ft.errors import UserError

# bytes per parameter (weights, gradients, one optimizer moment) and per activation value
PRECISION_BYTES: dict[str, tuple[int, float]] = {
    "32-true": (4, 4.0), "32": (4, 4.0), "bf16-mixed": (4, 3.0), "16-mixed": (4, 3.0),
    "bf16-true": (2, 2.0), "16-true": (2, 2.0),
}
ADAM_MOMENTS = 2
# fp32 (batch, seq, vocab) tensors alive as backward starts: logits, log-probabilities and both their gradients
HEAD_COPIES = 4
# fp32 (batch, seq, vocab) tensors of an evaluation forward's loss: the logits upcast and the log-probabilities
EVAL_HEAD_COPIES = 2


@dataclass(frozen=True)
class Shape:
    """The transformer shape that activations depend on (read from the backbone's config)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    gated: bool  # Llama-like gated MLP and RMSNorm, else BERT-like
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    lm_head: bool = False
    eager_attention: bool = False  # Transformers' `eager` implementation: the attention probabilities are kept


@dataclass(frozen=True)
class Sharding:
    """How many ways each part is split across devices (1: replicated)."""

    weights: int = 1
    gradients: int = 1
    optimizer: int = 1


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    trainable: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    tokens: int  # per device and batch: batch_size x max_length
    evaluation: float = 0.0  # an evaluation batch's forward (no gradients), at eval_batch_size x max_length
    # host memory: Lightning's atomic save serializes the whole checkpoint into a buffer before writing the file,
    # while the step's memory stays resident (see `checkpoint_bytes`)
    checkpoint: float = 0.0
    process: float = 0.0  # the process before the model exists: interpreter, libraries, recipe, tokenizer
    on_host: bool = False  # the devices are the CPU: the training tensors live in the process's host memory too
    # weights of a frozen model the task holds besides the trained one (DPO's reference copy); never sharded, as
    # the strategy does not wrap it
    frozen: float = 0.0

    @property
    def device(self) -> float:
        """The tensors of one device at its peak: a training step, or an evaluation batch after one (Lightning
        frees the gradients only at the next step's `zero_grad`)."""
        return self.weights + self.frozen + self.gradients + self.optimizer + max(self.activations, self.evaluation)

    @property
    def host(self) -> float:
        """The resident memory of one training process at its peak."""
        return self.process + self.checkpoint + (self.device if self.on_host else 0.0)

    @property
    def total(self) -> float:
        """What one device must hold: the host memory of the process where the device is the CPU."""
        return self.host if self.on_host else self.device

    @property
    def activations_per_token(self) -> float:
        return self.activations / self.tokens


def sharding(strategy: str, devices: int) -> Sharding:
    """What the Lightning strategy (its registry name or class name) splits across `devices`."""
    name = strategy.lower()
    if "fsdp" in name or "stage_3" in name:
        return Sharding(devices, devices, devices)
    if "deepspeed" in name:  # stage 2 (Lightning's default stage) and stage 1 shard less
        return Sharding(1, devices if "stage_1" not in name else 1, devices)
    return Sharding()


def precision_bytes(precision: str) -> tuple[int, float]:
    found = PRECISION_BYTES.get(str(precision))
    if found is None:
        raise UserError(f"trainer.precision {precision!r}: estimate knows {', '.join(PRECISION_BYTES)}; "
                        "set one of them")
    return found


def layer_activation_bytes(shape: Shape, seq: int, d: float) -> float:
    """Bytes autograd keeps per token for one transformer layer (see the module docstring)."""
    h, i, a = shape.hidden, shape.intermediate, shape.heads
    # eager attention keeps (batch, a, s, s) probabilities, a * s values per token, where fused kernels keep a
    probabilities = d * a * (seq - 1) if shape.eager_attention else 0.0
    if shape.gated:
        return d * (10 * h + 4 * i + a) + probabilities
    found = d * (8 * h + 2 * i + a)
    found += d * 2 * h if shape.hidden_dropout > 0 else 0.0
    found += d * 3 * a * seq if shape.attention_dropout > 0 else probabilities  # dropout: the math path, kept
    return found


def activation_bytes_per_token(shape: Shape, seq: int, d: float, checkpointing: bool = False,
                               lora_inputs: int = 0) -> float:
    """Bytes per token of what autograd keeps for backward plus backward's working memory at its start;
    `lora_inputs`: input features of the adapted linear layers of one layer (adapters with dropout)."""
    layer = layer_activation_bytes(shape, seq, d) + (d + 1) * lora_inputs
    kept = shape.layers * d * shape.hidden + layer if checkpointing else shape.layers * layer
    head = HEAD_COPIES * 4.0 * shape.vocab if shape.lm_head else 0.0
    return kept + layer + d * 3 * shape.hidden + head


def evaluation_bytes_per_token(shape: Shape, seq: int, d: float) -> float:
    """Bytes per token of an evaluation forward: no gradients, so one layer's working memory at a time, and with a
    language-model head its logits (in half precision first where the precision computes in it) and the loss's
    fp32 copies."""
    head = (EVAL_HEAD_COPIES * 4.0 + (2.0 if d < 4 else 0.0)) * shape.vocab if shape.lm_head else 0.0
    return layer_activation_bytes(shape, seq, d) + d * shape.hidden + head


def estimate(*, parameters: int, trainable: int, shape: Shape, precision: str, batch_size: int, max_length: int,
             split: Sharding = Sharding(), checkpointing: bool = False, lora_inputs: int = 0,
             quantized: int = 0, quantized_bytes: float = 0.0, adapter: bool = False,
             eval_batch_size: int = 0, frozen: int = 0) -> MemoryEstimate:
    """The peak per device of one training step and of an evaluation batch after it (see the module docstring);
    `quantized` of the parameters are stored at `quantized_bytes` each (QLoRA's 4-bit base weights with their
    quantization constants); an `adapter` model's checkpoint holds only its trainable weights; `frozen`
    parameters of a model the task holds besides (a reference copy) count as weights, unsharded."""
    param_bytes, d = precision_bytes(precision)
    tokens = batch_size * max_length
    per_token = activation_bytes_per_token(shape, max_length, d, checkpointing, lora_inputs)
    weights = ((parameters - quantized) * param_bytes + quantized * quantized_bytes) / split.weights
    optimizer = ADAM_MOMENTS * trainable * param_bytes / split.optimizer
    return MemoryEstimate(
        parameters=parameters, trainable=trainable, weights=weights,
        gradients=trainable * param_bytes / split.gradients, optimizer=optimizer,
        activations=per_token * tokens, tokens=tokens,
        evaluation=evaluation_bytes_per_token(shape, max_length, d) * eval_batch_size * max_length,
        frozen=frozen * param_bytes,
        checkpoint=checkpoint_bytes(trainable * param_bytes / split.weights if adapter else weights, optimizer),
    )


def checkpoint_bytes(weights: float, optimizer: float) -> float:
    """Host bytes of the checkpoint buffer: Lightning's `_atomic_save` writes `torch.save` of the whole checkpoint
    (the saved weights and the optimizer state, hyperparameters aside) into a `BytesIO` and only then to the file.
    It comes on top of the training step, whose freed activations the allocator keeps resident for the next one."""
    return weights + optimizer


def first(config: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` that the config sets (architectures name the same thing differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default
