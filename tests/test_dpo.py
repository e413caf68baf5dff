"""The `dpo` task: its objectives equal TRL 1.16's (loss, gradients and logged rewards on the same batch), the
reference model's three sources agree, and a real fit learns a preference rule."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from helpers import QUIET, cli
from preference_fixtures import follows_rule, write_rule_data
from sft_fixtures import make_causal_lm
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_ft.loading import LoadOptions
from lit_ft.tasks.preference.dpo import DPOTask
from lit_ft.tasks.preference.reference import REFERENCE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")

BETA, SMOOTHING, GAMMA = 0.3, 0.2, 0.7


def pair_batch(pairs: list[tuple[list[int], list[int], list[int]]], pad: int) -> dict[str, Any]:
    """A pair batch as the data contract has it (chosen rows, then rejected rows, right padded), built by hand."""
    sequences = [p + c for p, c, _ in pairs] + [p + r for p, _, r in pairs]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in pairs] + [[0] * len(p) + [1] * len(r) for p, _, r in pairs]
    width = max(len(s) for s in sequences)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.bool)
    return {"inputs": {"input_ids": ids, "attention_mask": attention}, "completion_mask": completion,
            "id": [str(i) for i in range(len(pairs))]}


def random_pairs(vocab: int, n: int = 3, seed: int = 0) -> list[tuple[list[int], list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)

    def ids(length: int) -> list[int]:
        return torch.randint(10, vocab, (length,), generator=g).tolist()

    return [(ids(3 + i), ids(2 + 2 * i), ids(4 - i)) for i in range(n)]


def lit_task(llama: Path, loss_type: str) -> tuple[DPOTask, torch.nn.Module]:
    task = DPOTask({}, loss_type=loss_type, beta=BETA, label_smoothing=SMOOTHING if loss_type == "robust" else 0.0,
                   simpo_gamma=GAMMA)
    return task, task.build_model(str(llama), LoadOptions())


def lit_step(task: DPOTask, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """lit_ft's loss on `batch` (its gradients left on `model`) and its metrics."""
    outputs = task.forward(model, batch)
    loss = task.loss(outputs, batch)
    loss.backward()
    metrics = task.metrics()
    task.update_metrics(metrics, model, batch, outputs)
    return float(loss.detach()), {k: float(v) for k, v in metrics.compute().items()}


def trl_dpo(policy: torch.nn.Module, reference: torch.nn.Module, tokenizer: Any, loss_type: str, out: Path,
            batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(out), loss_type=[loss_type], beta=BETA, report_to="none", use_cpu=True,
                     bf16=False, label_smoothing=SMOOTHING if loss_type == "robust" else 0.0)
    data = Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    trainer = DPOTrainer(policy, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer)
    inputs = {**batch["inputs"], "completion_mask": batch["completion_mask"].long()}
    loss = trainer._compute_loss(trainer.model, inputs, False)
    loss.backward()
    mode = "train" if trainer.model.training else "eval"
    return float(loss.detach()), {k: v[-1] for k, v in trainer._metrics[mode].items()}


def trl_reference_free(policy: torch.nn.Module, tokenizer: Any, loss_type: str, out: Path,
                       batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    data = Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    common = {"output_dir": str(out), "beta": BETA, "report_to": "none", "use_cpu": True, "bf16": False}
    if loss_type == "simpo":
        trainer: Any = CPOTrainer(policy, args=CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=GAMMA),
                                  train_dataset=data, processing_class=tokenizer)
    else:
        trainer = ORPOTrainer(policy, args=ORPOConfig(**common), train_dataset=data, processing_class=tokenizer)
    ids, mask = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"]
    labels = ids.masked_fill(~batch["completion_mask"], -100)
    pairs = ids.size(0) // 2
    halves = {"chosen": slice(None, pairs), "rejected": slice(pairs, None)}
    inputs = {f"{side}_{key}": value[rows] for side, rows in halves.items()
              for key, value in (("input_ids", ids), ("attention_mask", mask), ("labels", labels))}
    loss, metrics = trainer.get_batch_loss_metrics(trainer.model, inputs)
    loss.backward()
    return float(loss.detach()), metrics


TRL_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
               "logps/rejected")


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo"])
def test_loss_and_gradients_equal_trl(llama: Path, tmp_path: Path, loss_type: str) -> None:
    """On the same batch, policy and reference, lit_ft's loss, every parameter's gradient and the logged rewards
    and log-probs equal TRL's (DPOTrainer, or CPOTrainer / ORPOTrainer for the reference-free objectives)."""
    task, model = lit_task(llama, loss_type)
    tokenizer = AutoTokenizer.from_pretrained(llama)
    batch = pair_batch(random_pairs(len(tokenizer)), tokenizer.pad_token_id)
    with torch.no_grad():  # a reference that differs from the policy, so the log-ratios are not all 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    theirs = copy.deepcopy(model)
    if task.reference is not None:
        reference = AutoModelForCausalLM.from_pretrained(llama)
        task.reference._copy = copy.deepcopy(reference).eval()
        trl_loss, trl_metrics = trl_dpo(theirs, reference, tokenizer, loss_type, tmp_path, batch)
    else:
        trl_loss, trl_metrics = trl_reference_free(theirs, tokenizer, loss_type, tmp_path, batch)
    model.train()
    loss, metrics = lit_step(task, model, batch)
    assert loss == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)
    for name in TRL_METRICS:
        assert metrics[name] == pytest.approx(float(trl_metrics[name]), rel=1e-5, abs=1e-5), name
    theirs_grads = dict(theirs.named_parameters())
    compared = 0
    for name, p in model.named_parameters():
        other = theirs_grads[name].grad
        assert p.grad is not None and other is not None, name
        torch.testing.assert_close(p.grad, other, rtol=1e-5, atol=1e-5, msg=name)
        compared += 1
    assert compared == len(theirs_grads)


# ---- the reference model -----------------------------------------------------------------------------------------
def test_lora_reference_is_the_base_with_adapters_disabled(llama: Path) -> None:
    """With LoRA the reference is the policy's own base weights (adapters disabled): no copy is loaded, and its
    log-probs are the base model's while the policy's have moved."""
    from lit_ft.lora import LoraSettings, apply_lora
    from lit_ft.tasks.preference.logps import pair_forward

    task = DPOTask({})
    base = task.build_model(str(llama), LoadOptions())
    count = sum(p.numel() for p in base.parameters())
    policy = apply_lora(copy.deepcopy(base), LoraSettings(r=4), task.peft_task_type).train()
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # adapters that change the policy
    tokenizer = AutoTokenizer.from_pretrained(llama)
    batch = pair_batch(random_pairs(len(tokenizer)), tokenizer.pad_token_id)
    with torch.no_grad():
        expected, moved = pair_forward(base, batch).logps, pair_forward(policy, batch).logps
    assert task.reference is not None
    found = task.reference.logps(policy, batch)
    torch.testing.assert_close(found.chosen, expected.chosen)
    torch.testing.assert_close(found.rejected, expected.rejected)
    assert not torch.allclose(moved.chosen, expected.chosen)
    assert task.reference._copy is None and task.frozen_parameters(policy) == 0
    assert policy.training and all(m.training for m in policy.modules())  # its modes are back after the reference
    assert task.frozen_parameters(base) == count  # without LoRA: a frozen copy of every weight


def fit_args(root: Path, backbone: Path, files: dict[str, str], *extra: str) -> list[str]:
    """The shipped recipe on the rule data and a tiny Llama (fp32: the comparisons below are exact)."""
    return ["fit", "--config", str(ROOT / "configs" / "dpo_hh.yaml"), "--model.backbone", str(backbone),
            "--data.init_args.source.train", files["train"], "--data.init_args.source.validation",
            files["validation"], "--data.init_args.format", "explicit", "--data.init_args.batch_size", "16",
            "--data.init_args.max_length", "32", "--data.init_args.max_prompt_length", "16",
            "--trainer.accumulate_grad_batches", "1", "--trainer.precision", "32-true", "--model.learning_rate",
            "3e-3", "--model.warmup", "0", "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
            *QUIET, *extra]


@pytest.fixture(scope="module")
def rule_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_causal_lm(tmp_path_factory.mktemp("rule_llama"), merges=False)


def test_precomputed_reference_gives_the_live_loss(rule_llama: Path, tmp_path: Path) -> None:
    """`precompute_ref_log_probs` trains and validates exactly as the live frozen copy does; the log-probs ride
    with the features, the copy is dropped, and no checkpoint holds a reference model's weights."""
    files = write_rule_data(tmp_path / "data", n_train=32, n_eval=16)
    short = ["--trainer.max_epochs", "1"]  # an epoch: Lightning builds the train loader to count its steps
    live = cli(*fit_args(tmp_path / "live", rule_llama, files, *short))
    cached = cli(*fit_args(tmp_path / "cached", rule_llama, files, *short,
                           "--model.task_options.precompute_ref_log_probs", "true"))
    for key in ("val/loss", "val/rewards/margins", "val/rewards/chosen"):
        assert float(cached.trainer.callback_metrics[key]) == pytest.approx(
            float(live.trainer.callback_metrics[key]), rel=1e-5, abs=1e-6), key
    data = cached.datamodule
    assert all(set(REFERENCE_COLUMNS) <= set(data.features(split).column_names) for split in ("train", "validation"))
    assert cached.model.plugin.reference._copy is None
    assert live.model.plugin.reference._copy is not None  # the live run used its frozen copy
    for result in (live, cached):
        saved = torch.load(result.trainer.checkpoint_callback.best_model_path, weights_only=True)["state_dict"]
        assert set(saved) == set(result.model.state_dict())
        assert sum(v.numel() for v in saved.values()) == sum(p.numel() for p in result.model.model.parameters())


@pytest.mark.parametrize(("extra", "frozen"), [((), True), (("--model.lora.r", "4"), False),
                                               (("--model.task_options.precompute_ref_log_probs", "true"), False),
                                               (("--model.task_options.loss_type", "simpo"), False)])
def test_estimate_counts_the_frozen_reference(llama: Path, capsys: pytest.CaptureFixture[str],
                                              extra: tuple[str, ...], frozen: bool) -> None:
    """`lit_ft estimate` adds the frozen copy's weights (fp32 under bf16-mixed) only where one is held, and counts
    both sequences of each pair in the activations."""
    from lit_ft.commands import estimate

    estimate.main(["--config", str(ROOT / "configs" / "dpo_hh.yaml"), "--model.backbone", str(llama), *extra])
    out = capsys.readouterr().out
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(llama).parameters())
    rows = [line for line in out.splitlines() if line.strip().startswith("frozen model")]
    if frozen:
        assert len(rows) == 1 and float(rows[0].split()[2]) == pytest.approx(params * 4 / 1024**3, abs=1e-3)
    else:
        assert not rows
    assert "x 4,096 tokens" in out  # 4 pairs x 2 sequences x max_length 512


@pytest.mark.slow
def test_dpo_learns_a_preference_rule(rule_llama: Path, tmp_path: Path) -> None:
    """A tiny random Llama trained by `lit_ft fit` on pairs whose chosen answers are vowels and rejected ones
    consonants: held-out reward accuracy >= 0.9, and its greedy generations (predict, and the export in a
    text-generation pipeline) answer in vowels, which the untrained model does not."""
    from transformers import pipeline

    files = write_rule_data(tmp_path / "data")
    task = DPOTask({}, max_new_tokens=4)
    untrained = task.build_model(str(rule_llama), LoadOptions())
    prompts = [json.loads(line)["prompt"] for line in Path(files["predict"]).read_text().splitlines()]
    before = task.predictions(untrained, {"prompt_ids": [task.tokenizer(p)["input_ids"] for p in prompts],
                                          "id": list(range(len(prompts)))}, None)
    assert not any(follows_rule(r["prediction"]) for r in before)
    result = cli(*fit_args(tmp_path / "run", rule_llama, files, "--trainer.max_epochs", "6"))
    assert float(result.trainer.checkpoint_callback.best_model_score) >= 0.9
    cli("predict", "--config", str(tmp_path / "run" / "config.yaml"), "--ckpt_path", "best",
        "--data.init_args.source.predict", files["predict"], "--model.task_options.max_new_tokens", "4")
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == prompts
    assert all(follows_rule(r["prediction"]) for r in records), records
    generator = pipeline("text-generation", model=str(tmp_path / "run" / "export"))
    texts = [out[0]["generated_text"][len(p):] for p, out in zip(prompts, generator(prompts), strict=True)]
    assert [t.strip() for t in texts] == [r["prediction"] for r in records]


@pytest.mark.parametrize(("options", "words"), [({"loss_type": "robust", "label_smoothing": 0.5}, "below 0.5"),
                                                ({"loss_type": "sigmoid", "label_smoothing": 0.1}, "does not use it")])
def test_label_smoothing_outside_its_use_is_one_line(options: dict[str, Any], words: str) -> None:
    from lit_ft.errors import UserError

    with pytest.raises(UserError, match=words) as err:
        DPOTask({}, **options)
    assert "\n" not in str(err.value) and "model.task_options.label_smoothing" in str(err.value)
