"""`lit_ft estimate` against the peak resident memory of `lit_ft fit` of the same recipe, both run as the user runs
them: each command in a fresh process, its peak read by the kernel (`ru_maxrss` of the waited-for child).

Three recipes: the quickstart (the packaged MiniLM), the Alpaca SFT recipe on the tiny stand-in Llama (bf16-mixed,
gradient accumulation, a language-model head whose evaluation batch outweighs the step's activations) and the
CoNLL-2003 NER recipe (MiniLM, its offline data). The estimate counts full-length batches (batch_size x
max_length), an upper bound: the MiniLM recipes run at a max_length that their rows reach in every batch (the
quickstart's rows have 7 to 20 tokens, so at its shipped 64 a fit peaks some 20% under the estimate;
docs/memory.md has the figures). Each fit runs 2 optimizer steps, validates one batch and writes its checkpoints
and export.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builders import SHARED_DATA, shared_data
from stand_ins import ROOT, offline_piece

pytestmark = pytest.mark.slow

# what the fit of a case adds to its recipe: a tiny stand-in backbone (`llama`), command-line overrides
CASES: dict[str, tuple[str | None, list[str]]] = {
    "quickstart": (None, ["--data.init_args.max_length", "12"]),
    "sft_alpaca": ("llama", []),
    "ner_conll2003": (None, ["--data.init_args.max_length", "32"]),
}
# the waited-for child's peak resident memory, in a parent of its own (RUSAGE_CHILDREN keeps the largest child)
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")


def short_run(out: Path, recipe: Path, backbone: Path | None) -> Path:
    """An overlay: 2 optimizer steps, one validation batch after them, the backbone swapped where given."""
    accumulate = yaml.safe_load(recipe.read_text())["trainer"].get("accumulate_grad_batches", 1)
    overlay: dict = {"trainer": {"max_steps": 2, "val_check_interval": 2 * accumulate, "check_val_every_n_epoch": None,
                                 "num_sanity_val_steps": 0, "limit_val_batches": 1, "enable_progress_bar": False}}
    if backbone is not None:
        overlay["model"] = {"backbone": str(backbone)}
    out.write_text(yaml.safe_dump(overlay))
    return out


def run_both(recipe: Path, work: Path, overlays: list[Path], extra: list[str]) -> tuple[float, float]:
    """(measured peak of the fit, the estimate), in bytes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "LIT_FT_OVERLAY": os.pathsep.join(map(str, overlays)), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_ft"]
    fit = subprocess.run([sys.executable, "-c", PEAK, *command, "fit", "--config", str(recipe), *extra,
                          "--trainer.default_root_dir", str(work / "runs")],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-2000:]
    estimate = subprocess.run([*command, "estimate", "--config", str(recipe), *extra], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300, check=True)
    found = re.search(r"peak memory per device \(estimate\): ([\d.]+) GiB", estimate.stdout)
    assert found, estimate.stdout
    return float(fit.stdout.split()[-1]), float(found.group(1)) * 2**30


@pytest.mark.parametrize("name", list(CASES))
def test_estimate_within_25_percent_of_the_fit_peak(name: str, stand_in_models: dict[str, Path],
                                                   tmp_path: Path) -> None:
    shared_data(".")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)  # ../shared/data resolves
    work = tmp_path / "work"
    work.mkdir()
    recipe = ROOT / "configs" / f"{name}.yaml"
    stand_in, extra = CASES[name]
    piece = offline_piece(recipe)
    overlays = [*([piece] if piece else []),
                short_run(tmp_path / "short.yaml", recipe, stand_in_models[stand_in] if stand_in else None)]
    measured, estimated = run_both(recipe, work, overlays, extra)
    print(f"{name}: measured {measured / 2**20:.0f} MiB, estimated {estimated / 2**20:.0f} MiB")
    assert measured > 500 * 2**20  # the process and the step, not a failed start
    assert 0.75 <= estimated / measured <= 1.25, (measured, estimated)
