"""The recipe's model built on the `meta` device: every parameter with its shape and dtype, no storage, no weights
read. `lit_ft estimate` counts it, so a 7B backbone costs nothing but its `config.json` (and tokenizer files, which
some tasks read to build their head).

The task plugin builds the model as in `fit` (`Task.build_model`, then freezing and LoRA in `FineTuner.build`), with
`LoadOptions(meta=True)`: its `load_pretrained` call builds from the backbone's config inside `torch.device("meta")`
(`lit_ft.loading`), so weights are neither read nor allocated.
"""

from __future__ import annotations

import warnings
from typing import Any

from lit_ft.errors import UserError
from lit_ft.module import FineTuner


def meta_finetuner(model_args: dict[str, Any], info: dict[str, Any]) -> FineTuner:
    """A FineTuner built from the recipe's `model` section and the data's info, its weights on `meta` (unquantized:
    the estimate counts 4-bit weights itself, and needs no GPU for it)."""
    args = {k: v for k, v in model_args.items() if k.split(".")[0] not in ("optimizer", "info", "quantization")}
    module = FineTuner(**args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft asks models by names Transformers 5 deprecates
            module.build(info, meta=True)
    except OSError as err:
        raise UserError(f"estimate needs the backbone's config.json: {err}") from err
    return module
