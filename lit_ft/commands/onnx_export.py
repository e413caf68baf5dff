"""Export to ONNX: `model.onnx` with dynamic batch and sequence axes, the tokenizer and the model's config.

The graph comes from the `torch.export` based exporter (`torch.onnx.export(..., dynamo=True)`) with one named
`torch.export.Dim` per axis. Both other routes give a graph that is wrong at other shapes for Transformers'
BERT models: the TorchScript tracer fixes the attention-mask padding branch to the example's shapes, and
`dynamic_axes` with the dynamo exporter does too (logits off by about 5e-3 on a tiny BERT). Before the directory
is put in place, onnxruntime runs the file on inputs of other shapes than the example's and its outputs are
compared with PyTorch's: an export that disagrees is not written.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lit_ft.backbone import load_tokenizer, pad_with_eos, position_limit
from lit_ft.errors import UserError
from lit_ft.training.export import write_export_dir, write_tokenizer_and_manifest

if TYPE_CHECKING:
    from lit_ft.module import FineTuner
    from lit_ft.task import Task

ONNX_FILE = "model.onnx"
INSTALL = "pip install 'lit_ft[onnx]'"
PROTOBUF_LIMIT = 2**31 - 2**26  # a model file above 2 GiB keeps its weights in `model.onnx.data` beside it
# inputs the export is traced with (the first two rows) and checked on (all, then the last alone: other batch
# sizes and lengths than the trace's); pairs, so token type ids vary too; lengths differ, so rows are padded
SAMPLE_TEXTS = [
    ("Who wrote it?", "No one knows."),
    ("Where did the film crew travel?", "They visited Paris and Berlin."),
    ("Great acting.", "The plot was dull, but the music was wonderful and the ending surprised everyone."),
]
MAX_SAMPLE_TOKENS = 64


@dataclass(frozen=True)
class OnnxExport:
    """What an ONNX export wrote and how far onnxruntime's outputs were from PyTorch's."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    max_abs_diff: float
    checked_rows: int


    def summary(self) -> str:
        return (f"lit_ft: exported to {self.path / ONNX_FILE} (inputs {', '.join(self.inputs)}; outputs "
                f"{', '.join(self.outputs)}); onnxruntime vs PyTorch on {self.checked_rows} inputs: max abs diff "
                f"{self.max_abs_diff:.2g}")


def export_onnx_checkpoint(ckpt_path: str, out_dir: str | Path, atol: float = 1e-3,
                           overwrite: bool = False) -> OnnxExport:
    """`lit_ft export --format onnx`: the task is checked (and the extra's packages) before the model is built."""
    from lit_ft.registry import get_task
    from lit_ft.training.export import module_from_checkpoint
    from lit_ft.training.safe_load import load_checkpoint_file

    checkpoint = load_checkpoint_file(ckpt_path)
    task = (checkpoint.get("hyper_parameters") or {}).get("task")
    if isinstance(task, str):  # else not lit_ft's: module_from_checkpoint says so
        onnx_outputs(get_task(task))
    require_onnx()
    return export_onnx(module_from_checkpoint(checkpoint, ckpt_path), out_dir, atol, overwrite)


def require_onnx() -> None:
    """onnx, onnxscript (the exporter) and onnxruntime (the check) are the optional extra `onnx`."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(package)
        except ImportError as err:
            raise UserError(f"--format onnx needs the package '{package}', which is not installed: {INSTALL}"
                            ) from err


def onnx_outputs(task: type[Task]) -> tuple[str, ...]:
    """The task's ONNX outputs (`Task.onnx_outputs`), or a UserError naming the tasks that have them."""
    if task.onnx_outputs:
        return task.onnx_outputs
    from lit_ft.registry import available_tasks

    able = sorted(name for name, entry in available_tasks().items() if entry.task.onnx_outputs)
    raise UserError(f"task '{task.name}' cannot be exported to ONNX; tasks that can: {', '.join(able)} (their "
                    f"Task.onnx_outputs name the model outputs to export). Use --format hf for '{task.name}'")


class _NamedOutputs(nn.Module):
    """The model as a function of its input tensors (positional, in `input_names` order) returning a tuple of
    the named outputs: the plain signature an ONNX graph has."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output_names = output_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, inputs, strict=True)))
        return tuple(out[name] for name in self.output_names)


def export_onnx(module: FineTuner, out_dir: str | Path, atol: float = 1e-3, overwrite: bool = False) -> OnnxExport:
    """Write `module`'s model (LoRA merged) as `model.onnx` plus tokenizer, config and `lit_ft.json`, atomically.

    Args:
        module: A built FineTuner whose task declares `onnx_outputs`.
        out_dir: Target directory: missing, empty or an earlier export (its files are replaced).
        atol: Largest absolute difference between onnxruntime's and PyTorch's outputs accepted by the check.
        overwrite: Write into a directory holding files lit_ft did not write (they are kept).
    """
    outputs = list(onnx_outputs(type(module.plugin)))
    require_onnx()
    written: list[OnnxExport] = []

    def write(tmp: Path) -> None:
        model: Any = module.exportable_model(merge=True)
        tokenizer = load_tokenizer(module.hparams["backbone"])
        named = _NamedOutputs(model, model_input_names(model, tokenizer), outputs)
        with evaluating(model):
            diff = write_and_check(named, tokenizer, tmp / ONNX_FILE, position_limit(module.hparams["backbone"]))
        if not diff <= atol:
            raise UserError(f"the ONNX export of {model.config.model_type} disagrees with PyTorch: outputs differ by "
                            f"up to {diff:.3g} (more than --atol {atol:g}); nothing was written. Use --format hf")
        model.config.save_pretrained(tmp)
        manifest = {"file": ONNX_FILE, "opset": opset(tmp / ONNX_FILE), "inputs": named.input_names,
                    "outputs": outputs, "max_abs_diff": diff}
        write_tokenizer_and_manifest(module, tmp, format="onnx", onnx=manifest)
        written.append(OnnxExport(Path(out_dir), named.input_names, outputs, diff, len(SAMPLE_TEXTS) + 1))

    write_export_dir(module, out_dir, write, overwrite)
    return written[0]


def write_and_check(model: _NamedOutputs, tokenizer: Any, path: Path, max_length: int | None) -> float:
    """Export traced on two rows, then the largest difference from PyTorch on other batch sizes and lengths."""
    pad_with_eos(tokenizer)  # as the data module pads decoder LLMs' rows
    device = next(model.parameters()).device
    length = min(MAX_SAMPLE_TOKENS, max_length or MAX_SAMPLE_TOKENS)
    sample, *checks = (sample_inputs(tokenizer, model.input_names, rows, length)
                       for rows in (SAMPLE_TEXTS[:2], SAMPLE_TEXTS, SAMPLE_TEXTS[-1:]))
    write_onnx(model, tuple(t.to(device) for t in sample), path, max_length)
    return max(max_abs_diff(path, model, check) for check in checks)


def model_input_names(model: nn.Module, tokenizer: Any) -> list[str]:
    """The tokenizer's outputs that the model's forward takes (`token_type_ids` only where the model has them)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    names = [n for n in tokenizer.model_input_names if n in accepted]
    if "input_ids" not in names:
        raise UserError(f"the model {type(model).__name__} does not take the tokenizer's input_ids "
                        f"({tokenizer.model_input_names}), so it cannot be exported to ONNX; use --format hf")
    return names


def sample_inputs(tokenizer: Any, names: list[str], pairs: list[tuple[str, str]], max_length: int
                  ) -> tuple[torch.Tensor, ...]:
    """Tokenized text pairs, padded to the longest, as tensors in `names` order."""
    questions, contexts = zip(*pairs, strict=True)
    encoded = tokenizer(list(questions), list(contexts), padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
    return tuple(encoded[name] for name in names)


def write_onnx(model: _NamedOutputs, sample: tuple[torch.Tensor, ...], path: Path, max_length: int | None) -> None:
    """Export with dynamic batch and sequence axes (the sample has two rows, so neither axis is fixed to 1); the
    sequence axis goes up to the backbone's position table (`max_length`), where it has one."""
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_length)
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > PROTOBUF_LIMIT
    with quiet_exporter():
        torch.onnx.export(
            model, sample, str(path), input_names=model.input_names, output_names=model.output_names,
            dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in sample),), dynamo=True, external_data=large,
            verbose=False,
        )


def max_abs_diff(path: Path, model: _NamedOutputs, inputs: tuple[torch.Tensor, ...]) -> float:
    """Largest absolute difference between onnxruntime's outputs for `inputs` and the PyTorch model's."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {name: tensor.cpu().numpy() for name, tensor in zip(model.input_names, inputs, strict=True)}
    got = session.run(model.output_names, feed)
    device = next(model.parameters()).device
    with torch.no_grad():
        expected = model(*(t.to(device) for t in inputs))
    return max(float((torch.from_numpy(g) - e.float().cpu()).abs().max()) for g, e in zip(got, expected, strict=True))


def opset(path: Path) -> int:
    """The ONNX operator set the file needs (what a runtime must support)."""
    import onnx

    found = onnx.load(str(path), load_external_data=False).opset_import
    return next(int(o.version) for o in found if o.domain in ("", "ai.onnx"))


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for the export, the previous mode afterwards (the live model may train on)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter warns about its own internals (missing torchvision ops, renamed axes, deprecated pytree
    helpers) through warnings and the `torch.onnx` logger: nothing a user can act on."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
