"""Weight-decay groups, warmup + decay schedules, freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_ft.freeze import freeze, transformer_layers
from lit_ft.optim import decay_groups, warmup_schedule, warmup_steps


def _tiny_classifier(tiny_bert: Path) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)


def test_no_decay_on_biases_and_norms(tiny_bert: Path) -> None:
    model = _tiny_classifier(tiny_bert)
    decay, no_decay = decay_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert all(n.endswith(".weight") and "LayerNorm" not in n for n in decayed)
    assert all(n.endswith(".bias") or "LayerNorm" in n for n in skipped)
    assert len(decayed) + len(skipped) == len(names)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedule_warms_up_then_decays(kind: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_schedule(opt, warmup=10, total=110, kind=kind)  # type: ignore[arg-type]
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    expected_mid = {"linear": 0.5, "cosine": 0.5, "constant": 1.0}[kind]
    assert lrs[60] == pytest.approx(expected_mid, abs=1e-6)
    assert lrs[-1] < 0.02 or kind == "constant"


def test_warmup_ratio_or_steps() -> None:
    assert warmup_steps(0.1, 1000) == 100 and warmup_steps(500, 1000) == 500 and warmup_steps(0, 10) == 0
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        warmup_steps(-1, 10)


def test_freeze_backbone_and_lower_layers(tiny_bert: Path) -> None:
    model = _tiny_classifier(tiny_bert)
    freeze(model, backbone=True, layers=0)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    model = _tiny_classifier(tiny_bert)
    freeze(model, backbone=False, layers=1)
    stack = transformer_layers(model)
    assert stack is not None and len(stack) == 2
    assert not any(p.requires_grad for p in stack[0].parameters())
    assert all(p.requires_grad for p in stack[1].parameters())
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    with pytest.raises(ValueError, match="freeze_layers=5 but the backbone has 2"):
        freeze(_tiny_classifier(tiny_bert), backbone=False, layers=5)
