"""The recipe's model built on the `meta` device: every parameter with its shape and dtype, no storage, no weights
read. `lit_ft estimate` counts it, so a 7B backbone costs nothing but its `config.json` (and tokenizer files, which
some tasks read to build their head).

The task plugin builds the model as in `fit` (`Task.build_model`, then freezing and LoRA in `FineTuner.build`);
for the length of the build, the `AutoModelFor*.from_pretrained` calls it makes become `from_config` with the
same configuration inside `torch.device("meta")`, so weights are neither read nor allocated.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from lit_ft.errors import UserError
from lit_ft.transformers_internals import auto_model_base


@contextlib.contextmanager
def config_only_models() -> Iterator[None]:
    """Within the block, `AutoModelFor*.from_pretrained(name, config=...)` builds from the config on `meta`."""
    from transformers import AutoConfig

    def from_config_only(original: Any, cls: Any, name: Any, *args: Any, **kwargs: Any) -> nn.Module:
        remote = bool(kwargs.get("trust_remote_code", False))
        config = kwargs.pop("config", None) or AutoConfig.from_pretrained(name, trust_remote_code=remote)
        # the attention implementation changes what training keeps (eager: the probabilities); flash-attention's
        # kernels keep what sdpa's do, and would need their package and a GPU to be named here
        attention = {k: v for k, v in kwargs.items() if k == "attn_implementation" and v in ("eager", "sdpa")}
        with torch.device("meta"):
            model: nn.Module = cls.from_config(config, trust_remote_code=remote, **attention)
        return model

    with patched_from_pretrained(from_config_only):
        yield


@contextlib.contextmanager
def patched_from_pretrained(replacement: Callable[..., Any]) -> Iterator[None]:
    """Within the block, every `AutoModelFor*.from_pretrained(...)` calls `replacement(original, cls, ...)`."""
    classes = _auto_classes(auto_model_base())
    originals = {cls: cls.__dict__["from_pretrained"] for cls in classes if "from_pretrained" in cls.__dict__}
    for cls, original in originals.items():
        def patched(klass: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            return replacement(_original, klass, *args, **kwargs)

        setattr(cls, "from_pretrained", classmethod(patched))  # noqa: B010
    try:
        yield
    finally:
        for cls, original in originals.items():
            setattr(cls, "from_pretrained", original)  # noqa: B010


def _auto_classes(base: type) -> list[type]:
    """`base` and every subclass (each `AutoModelFor*` carries its own copy of `from_pretrained`)."""
    found = [base]
    sub: type
    for sub in base.__subclasses__():
        found.extend(_auto_classes(sub))
    return found


def meta_finetuner(model_args: dict[str, Any], info: dict[str, Any]) -> Any:
    """A FineTuner built from the recipe's `model` section and the data's info, its weights on `meta` (unquantized:
    the estimate counts 4-bit weights itself, and needs no GPU for it)."""
    from lit_ft.module import FineTuner

    args = {k: v for k, v in model_args.items() if k.split(".")[0] not in ("optimizer", "info", "quantization")}
    module = FineTuner(**args)
    try:
        with config_only_models(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft asks models by names Transformers 5 deprecates
            module.build(info)
    except OSError as err:
        raise UserError(f"estimate needs the backbone's config.json: {err}") from err
    return module
