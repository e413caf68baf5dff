"""Preference tuning against TRL: `reward` (the reward_model task against TRL's RewardTrainer) and `dpo` (the dpo
task against TRL's DPOTrainer, bench/preference_dpo.py).

`reward`: the packaged MiniLM on Anthropic HH-RLHF harmless (`../shared/data/hh_rlhf_harmless/train.jsonl`, 1,800
pairs; the recipe's seeded 10% validation split), 3 seeds, every setting and seed in a fresh process, interleaved:
The 3 pairs without an answer are left out (1,797 pairs: 1,617 to train on, 180 to validate).
- "lit_ft defaults": `lit_ft fit --config configs/reward_hh.yaml` as shipped (length-grouped batches, the best
  checkpoint by validation pairwise accuracy), only the precision set by the machine;
- "TRL RewardTrainer": the same pairs as token ids (the ones lit_ft's PreferenceData makes, so both sides read the
  same truncation), the recipe's lr, batch, epochs, weight decay, warmup and clipping, the same initial weights,
  TRL's defaults otherwise (random batches, dropout off, its final model).
Both in fp32, or bf16 autocast where the CPU has native bf16 (AMX / AVX512-BF16). Validation pairwise accuracy by one
shared evaluation of each run's model (fp32). Speed: training pairs per second over the training steps only (data
loading included; evaluation, checkpointing and export not).
Targets: lit_ft's mean accuracy >= TRL's - 0.5 pt; lit_ft's pairs/s >= 1.3x TRL's (the ratio of the means).

    python bench/preference_vs_trl.py reward                 # full run: 2 settings x 3 seeds
    python bench/preference_vs_trl.py reward --quick         # 1 seed, 400 rows, 1 epoch: the harness end to end
    python bench/preference_vs_trl.py dpo [ARGS...]          # bench/preference_dpo.py's main(ARGS)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LIT_FT_SHARED_DATA", REPO.parent / "shared" / "data"))
HH = Path("hh_rlhf_harmless/train.jsonl")  # under --data
RECIPE = REPO / "configs" / "reward_hh.yaml"
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
SETTINGS = ("lit_ft defaults", "TRL RewardTrainer")
ACCURACY_TOLERANCE_PT, SPEEDUP = 0.5, 1.3
QUICK_ROWS = 400


def machine() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "no avx2/bf16 flags"


def native_bf16() -> bool:
    """bf16 matrix units on this CPU (AMX or AVX512-BF16): there bf16 autocast is faster than fp32."""
    return any(f in machine() for f in ("amx_bf16", "avx512_bf16"))


def recipe() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    return loaded


# ---- what both sides train on ----------------------------------------------------------------------------------------
def initial_model(seed: int, out: Path) -> Path:
    """MiniLM with a seeded one-output head: the same start for both settings of a seed."""
    import torch
    from transformers import AutoTokenizer

    from lit_ft.backbone import resolve_backbone
    from lit_ft.loading import LoadOptions
    from lit_ft.tasks.preference.reward import RewardModelTask

    torch.manual_seed(seed)
    model: Any = RewardModelTask({}).build_model(resolve_backbone(BACKBONE), LoadOptions())
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_backbone(BACKBONE)).save_pretrained(out)
    return out


def answered(line: str) -> bool:
    """Both texts end with a non-empty assistant answer (3 of the 1,800 HH rows do not, which the recipe drops with
    `drop_untrainable`: left out of the file, so both sides split and train on the same pairs)."""
    row = json.loads(line)
    return all(row[side].rsplit("Assistant:", 1)[-1].strip() for side in ("chosen", "rejected"))


def train_file(opts: argparse.Namespace, work: Path) -> Path:
    """A copy of the shared file (its first `--rows` rows) without the rows lacking an answer."""
    lines = (Path(opts.data) / HH).read_text(encoding="utf-8").splitlines()
    lines = [line for line in lines[: opts.rows or None] if answered(line)]
    path = work / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pair_ids(train: Path, tokenizer: Path) -> dict[str, list[tuple[list[int], list[int]]]]:
    """(chosen ids, rejected ids) per pair of the recipe's train and validation splits, as lit_ft's PreferenceData
    tokenizes them (read through its batch contract: a one-pair batch holds the chosen row, then the rejected one)."""
    from lit_ft.source import DataSource
    from lit_ft.tasks.preference.data import PreferenceData

    init_args = dict(recipe()["data"]["init_args"])
    source = DataSource(**{**init_args.pop("source"), "train": str(train)})
    data = PreferenceData(source=source, tokenizer=str(tokenizer), **init_args)
    pairs: dict[str, list[tuple[list[int], list[int]]]] = {}
    for split in ("train", "validation"):
        pairs[split] = []
        for feature in data.features(split) or []:
            batch = data.collate([dict(feature)])
            ids, mask = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"]
            chosen, rejected = (ids[i][mask[i].bool()].tolist() for i in (0, 1))
            pairs[split].append((chosen, rejected))
    return pairs


def pairwise_accuracy(model_dir: Path, pairs: list[tuple[list[int], list[int]]], pad_id: int) -> float:
    """The share of pairs whose chosen sequence the model scores strictly higher (fp32, one pair per row)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(pairs), 32):
            chunk = pairs[start : start + 32]
            sequences = [c for c, _ in chunk] + [r for _, r in chunk]
            width = max(map(len, sequences))
            ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
            scores = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
            correct += int((scores[: len(chunk)] > scores[len(chunk) :]).sum())
    return correct / len(pairs)


# ---- the settings (each in its own process) --------------------------------------------------------------------------
class Clock:
    """Seconds of training steps: from each epoch's start or the previous step's end to the step's end (data loading
    included; evaluation, checkpointing and export fall outside)."""

    def __init__(self) -> None:
        self.seconds, self.steps, self.mark = 0.0, 0, 0.0

    def start(self) -> None:
        self.mark = time.perf_counter()

    def step(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self.mark
        self.steps += 1
        self.mark = now


def run_lit_ft(opts: argparse.Namespace, init: Path, train: Path, root: Path, clock: Clock) -> Path:
    """The shipped recipe; only the initial weights, the data file (for --rows), the epochs (for --quick) and the
    precision (the machine's) set here."""
    from lightning.pytorch import Callback

    from lit_ft.commands.cli import run

    class Measure(Callback):
        def on_train_epoch_start(self, *args: Any) -> None:
            clock.start()

        def on_train_batch_end(self, *args: Any) -> None:
            clock.step()

        def on_validation_end(self, *args: Any) -> None:
            clock.start()

    run(["fit", "--config", str(RECIPE), "--seed_everything", str(opts.seed), "--model.backbone", str(init),
         "--data.init_args.source.train", str(train), "--data.init_args.shuffle_seed", str(opts.seed),
         "--trainer.max_epochs", str(opts.epochs), "--trainer.precision", opts.precision,
         "--trainer.default_root_dir", str(root), "--trainer.logger", "false", "--trainer.enable_progress_bar",
         "false", "--trainer.enable_model_summary", "false"], callbacks=[Measure()])
    return root / "export"


def run_trl(opts: argparse.Namespace, init: Path, pairs: list[tuple[list[int], list[int]]], root: Path,
            clock: Clock) -> Path:
    """TRL's RewardTrainer with the recipe's hyperparameters on the same token ids; its defaults otherwise."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    cfg = recipe()
    model_cfg, data_cfg, trainer_cfg = cfg["model"], cfg["data"]["init_args"], cfg["trainer"]

    class Measure(TrainerCallback):
        def on_epoch_begin(self, *args: Any, **kwargs: Any) -> None:
            clock.start()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            clock.step()

    args = RewardConfig(
        output_dir=str(root / "trl"), per_device_train_batch_size=data_cfg["batch_size"],
        learning_rate=model_cfg["learning_rate"], weight_decay=model_cfg.get("weight_decay", 0.01),
        warmup_steps=model_cfg.get("warmup", 0.0), num_train_epochs=opts.epochs, lr_scheduler_type="linear",
        max_grad_norm=trainer_cfg.get("gradient_clip_val", 1.0), max_length=None, bf16=opts.precision != "32-true",
        center_rewards_coefficient=(model_cfg.get("task_options") or {}).get("center_rewards_coefficient"),
        save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True, seed=opts.seed, disable_tqdm=True,
        logging_steps=50, dataloader_num_workers=0)
    data = Dataset.from_dict({"chosen_ids": [c for c, _ in pairs], "rejected_ids": [r for _, r in pairs]})
    model = AutoModelForSequenceClassification.from_pretrained(init)
    trainer = RewardTrainer(model=model, args=args, train_dataset=data,
                            processing_class=AutoTokenizer.from_pretrained(init), callbacks=[Measure()])
    trainer.train()
    trainer.save_model(str(root / "export"))
    return root / "export"


def worker(opts: argparse.Namespace) -> None:
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(opts.threads)
    root = Path(tempfile.mkdtemp(prefix="lit_ft_reward_"))
    init = initial_model(opts.seed, root / "init")
    train = train_file(opts, root)
    pairs = pair_ids(train, init)
    clock = Clock()
    if opts.worker == "lit_ft defaults":
        model_dir = run_lit_ft(opts, init, train, root / "run", clock)
    else:
        model_dir = run_trl(opts, init, pairs["train"], root / "run", clock)
    pad = AutoTokenizer.from_pretrained(init).pad_token_id
    pairs_trained = len(pairs["train"]) * opts.epochs
    print("RESULT " + json.dumps({
        "setting": opts.worker, "seed": opts.seed, "train_pairs": len(pairs["train"]),
        "validation_pairs": len(pairs["validation"]), "steps": clock.steps, "train_seconds": clock.seconds,
        "pairs_per_s": pairs_trained / clock.seconds,
        "val_accuracy": pairwise_accuracy(model_dir, pairs["validation"], pad)}), flush=True)


def spawn(opts: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "reward", "--worker", setting, "--seed", str(seed),
           "--epochs", str(opts.epochs), "--rows", str(opts.rows or 0), "--threads", str(opts.threads),
           "--precision", opts.precision, "--data", str(opts.data)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{setting} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return dict(json.loads(lines[-1][len("RESULT "):]))


def summarise(results: list[dict[str, Any]]) -> bool:
    acc = {s: [r["val_accuracy"] for r in results if r["setting"] == s] for s in SETTINGS}
    speed = {s: statistics.mean(r["pairs_per_s"] for r in results if r["setting"] == s) for s in SETTINGS}
    print("\nvalidation pairwise accuracy per seed (mean); training pairs/s (mean)")
    for setting in SETTINGS:
        values = acc[setting]
        print(f"  {setting:<18} {', '.join(f'{v:.4f}' for v in values)}  mean {statistics.mean(values):.4f}  "
              f"{speed[setting]:.2f} pairs/s")
    gap = 100 * (statistics.mean(acc[SETTINGS[0]]) - statistics.mean(acc[SETTINGS[1]]))
    ratio = speed[SETTINGS[0]] / speed[SETTINGS[1]]
    checks = {"accuracy, lit_ft - TRL (pt)": (gap, gap >= -ACCURACY_TOLERANCE_PT, f">= -{ACCURACY_TOLERANCE_PT}"),
              "pairs/s, lit_ft / TRL": (ratio, ratio >= SPEEDUP, f">= {SPEEDUP}")}
    for name, (value, passed, target) in checks.items():
        print(f"  {name}: {value:+.2f} (target {target})  {'PASS' if passed else 'FAIL'}")
    ok = all(passed for _, passed, _ in checks.values())
    print(json.dumps({"bench": "preference_vs_trl reward", "results": results,
                      "checks": {k: v for k, (v, _, _) in checks.items()}, "ok": ok}))
    return ok


def reward_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="preference_vs_trl.py reward", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"1 seed, the first {QUICK_ROWS} rows, 1 epoch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=0, help="the first N rows of the file (default: all)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"],
                        help="default: bf16-mixed where the CPU has native bf16, else 32-true")
    parser.add_argument("--data", default=str(DATA), help="the shared data folder (holding hh_rlhf_harmless/)")
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seeds, opts.rows, opts.epochs = opts.seeds[:1], opts.rows or QUICK_ROWS, opts.epochs or 1
    opts.epochs = opts.epochs or recipe()["trainer"]["max_epochs"]
    opts.precision = opts.precision or ("bf16-mixed" if native_bf16() else "32-true")
    if not (Path(opts.data) / HH).is_file():
        sys.exit(f"{HH} not found in {opts.data}: pass --data DIR (the shared data folder)")
    if opts.worker:
        return worker(opts)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs ({machine()}), load {load:.2f}; {opts.precision}, {opts.threads} threads; "
          f"{opts.rows or 'all'} rows, {opts.epochs} epochs, seeds {opts.seeds}")
    results = []
    for seed in opts.seeds:
        for setting in SETTINGS:  # interleaved, so load on the machine hits both settings alike
            results.append(spawn(opts, setting, seed))
            print(f"  {json.dumps(results[-1])}", flush=True)
    sys.exit(0 if summarise(results) else 1)


def dpo_main(argv: list[str]) -> None:
    path = Path(__file__).resolve().parent / "preference_dpo.py"
    if not path.is_file():
        sys.exit(f"the dpo bench is missing: {path} does not exist")
    spec = importlib.util.spec_from_file_location("preference_dpo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["preference_dpo"] = module
    spec.loader.exec_module(module)
    module.main(argv)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("reward", "dpo"):
        sys.exit(f"usage: python bench/preference_vs_trl.py {{reward,dpo}} [ARGS...]\n\n{__doc__}")
    (reward_main if sys.argv[1] == "reward" else dpo_main)(sys.argv[2:])


if __name__ == "__main__":
    main()
