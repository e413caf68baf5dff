"""Tiny stand-ins for what this offline CPU machine lacks, applied to a recipe through LIT_FT_OVERLAY.

A recipe runs with everything of its own (precision, clipping, accumulation, loggers, callbacks, task options,
data settings) except:
- the backbone: a tiny random model of the same family built here (BERT for encoders, T5 for seq2seq, Llama for
  SFT), since the hub models are not here;
- hub data: the recipe's documented offline data piece (`configs/offline/<recipe>.yaml`), files of ../shared/data;
- the length of the run: 2 optimizer steps, validated at the end, and one batch per evaluation or prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from builders import SHARED_DATA, WORDS, make_tiny_bert
from sft_fixtures import make_causal_lm

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_CONFIGS = ROOT / "plugins" / "lit_ft_multiple_choice" / "configs"
RECIPES = sorted([*ROOT.glob("configs/*.yaml"), *PLUGIN_CONFIGS.glob("*.yaml")])
FAMILY = {"classification": "bert", "token_classification": "bert", "question_answering": "bert",
          "multiple_choice": "bert", "seq2seq": "t5", "sft": "llama", "dpo": "llama",
          "reward_model": "bert"}
STEPS = 2
# the SFT recipes' data: the stand-in Llama's tokenizer learns its merges on them, so it cuts them into about as
# many tokens as the real backbone's tokenizer does (the recipes' max_length must still hold their responses)
SFT_TEXTS = ["alpaca_first100/alpaca_tiny.json", "lima/lima.json", "hf_tests_samples/sft_chat/chat.jsonl",
             "bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv", "mbpp/mbpp.jsonl"]


def build_models(out: Path) -> dict[str, Path]:
    """One tiny model per family (positions for the longest recipe inputs: QA windows of 384 tokens)."""
    from test_seq2seq import make_tiny_t5

    return {
        "bert": make_tiny_bert(out / "bert", max_positions=512),
        "llama": make_causal_lm(out / "llama", corpus=_sft_corpus(), num_merges=8000),
        "t5": make_tiny_t5(out / "t5", WORDS),
    }


def _sft_corpus() -> list[str] | None:
    files = [SHARED_DATA / name for name in SFT_TEXTS if (SHARED_DATA / name).is_file()]
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines()[:3000]] or None


def read_recipe(recipe: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(recipe.read_text())
    assert isinstance(loaded, dict), recipe
    return loaded


def offline_piece(recipe: Path) -> Path | None:
    """The recipe's offline data piece when its data comes from the hub (it must have one)."""
    source = read_recipe(recipe)["data"]["init_args"]["source"]
    if not source.get("hub"):
        return None
    piece = recipe.parent / "offline" / recipe.name
    assert piece.is_file(), f"{recipe} reads hub data but has no offline piece {piece}"
    return piece


def stand_in_overlay(recipe: Path, models: dict[str, Path], out: Path) -> Path:
    """A config that swaps the recipe's backbone for a tiny one and keeps the run to STEPS optimizer steps."""
    cfg = read_recipe(recipe)
    accumulate = cfg.get("trainer", {}).get("accumulate_grad_batches", 1)
    overlay = {
        "model": {"backbone": str(models[FAMILY[cfg["model"]["task"]]])},
        # validate after the last step, counting batches across epochs (small data sets have fewer batches per epoch)
        "trainer": {"max_steps": STEPS, "val_check_interval": STEPS * accumulate, "check_val_every_n_epoch": None,
                    "num_sanity_val_steps": 0,
                    "limit_val_batches": 1, "limit_test_batches": 1, "limit_predict_batches": 1},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"stand_in_{recipe.stem}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def overlays(recipe: Path, models: dict[str, Path], out: Path) -> list[Path]:
    """What LIT_FT_OVERLAY names for a command of this recipe: its offline data (if any), then the stand-ins."""
    piece = offline_piece(recipe)
    return [*([piece] if piece else []), stand_in_overlay(recipe, models, out)]
