"""Sharded training pieces on the CPU: FSDP's layer policy on real models, sharded checkpoints gathered by
`lit_ft export`, and `lit_ft estimate` counting FSDP's activation checkpointing (the strategy pieces as parsed and
instantiated: tests/test_configs.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import cli, tiny_args
from lightning.pytorch.strategies import FSDPStrategy
from safetensors.torch import load_file
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointWrapper,
    apply_activation_checkpointing,
)

from lit_ft.commands.cli import main
from lit_ft.errors import UserError
from lit_ft.lora import LoraSettings
from lit_ft.module import FineTuner
from lit_ft.sharding import TransformerLayers
from lit_ft.training.checkpoint import find_checkpoint
from lit_ft.training.consolidate import deepspeed_command, is_checkpoint_dir
from lit_ft.training.safe_load import load_checkpoint_file

pytestmark = pytest.mark.usefixtures("single_thread")
CAUSAL = {"label_names": []}


def wrapped(module: torch.nn.Module) -> list[str]:
    return [name.replace("._checkpoint_wrapped_module", "") for name, m in module.named_modules()
            if isinstance(m, CheckpointWrapper)]


def test_policy_wraps_each_decoder_layer_of_a_llama_and_training_is_unchanged(llama: Path) -> None:
    plain = FineTuner(task="sft", backbone=str(llama), info=CAUSAL)
    wrapped_module = FineTuner(task="sft", backbone=str(llama), info=CAUSAL)
    policy = TransformerLayers()
    apply_activation_checkpointing(wrapped_module, auto_wrap_policy=policy)  # what FSDPStrategy runs
    assert wrapped(wrapped_module) == ["model.model.layers.0", "model.model.layers.1"]
    assert policy.names == {"LlamaDecoderLayer"}
    assert list(wrapped_module.state_dict()) == list(plain.state_dict())  # the wrapper keeps the names
    ids = torch.tensor([[1, 8, 9, 10, 11, 2]])
    losses = []
    for module in (plain, wrapped_module):
        model: Any = module.model
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append((loss.item(), model.get_input_embeddings().weight.grad.clone()))
    assert losses[0][0] == pytest.approx(losses[1][0], abs=1e-6)
    torch.testing.assert_close(losses[0][1], losses[1][1])


def test_policy_finds_layers_through_lora_and_in_encoders(llama: Path, tiny_bert: Path) -> None:
    lora = FineTuner(task="sft", backbone=str(llama), info=CAUSAL, lora=LoraSettings(r=4))
    apply_activation_checkpointing(lora, auto_wrap_policy=TransformerLayers())
    assert [n.rsplit(".", 2)[-2:] for n in wrapped(lora)] == [["layers", "0"], ["layers", "1"]]
    bert = FineTuner(backbone=str(tiny_bert), info={"problem_type": "single_label", "label_names": ["a", "b"]})
    apply_activation_checkpointing(bert, auto_wrap_policy=TransformerLayers())
    assert wrapped(bert) == ["model.bert.embeddings", "model.bert.encoder.layer.0", "model.bert.encoder.layer.1"]


@pytest.fixture(scope="module")
def run_dir(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from builders import write_sentiment_csvs

    tmp = tmp_path_factory.mktemp("sharded")
    files = write_sentiment_csvs(tmp / "data", n_train=16, n_eval=8)
    cli("fit", "--config", "configs/quickstart.yaml", *tiny_args(tmp / "run", tiny_bert, files),
        "--trainer.max_steps", "2", "--data.init_args.batch_size", "4", "--export.enabled", "false")
    return tmp / "run"


def test_export_gathers_an_fsdp_sharded_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    best = find_checkpoint(str(run_dir))
    sharded = tmp_path / "epoch=0-step=2.ckpt"
    FSDPStrategy(state_dict_type="sharded").save_checkpoint(load_checkpoint_file(best), sharded)  # Lightning's writer
    assert sharded.is_dir() and (sharded / "meta.pt").is_file() and is_checkpoint_dir(sharded)
    assert find_checkpoint(str(sharded)) == str(sharded)
    main(["export", str(sharded), "--output_dir", str(tmp_path / "from_shards")])
    main(["export", best, "--output_dir", str(tmp_path / "from_file")])
    got, want = (load_file(tmp_path / d / "model.safetensors") for d in ("from_shards", "from_file"))
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_deepspeed_checkpoint_without_deepspeed_gives_the_command(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here: the export gathers the checkpoint itself")
    ckpt = tmp_path / "epoch=0-step=2.ckpt"  # the layout Lightning's DeepSpeedStrategy writes
    (ckpt / "checkpoint").mkdir(parents=True)
    (ckpt / "latest").write_text("checkpoint")
    with pytest.raises(SystemExit) as done:
        main(["export", str(ckpt), "--output_dir", str(tmp_path / "out")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is a DeepSpeed checkpoint (ZeRO shards)" in err and "pip install deepspeed" in err
    assert deepspeed_command(ckpt) in err and not (tmp_path / "out").exists()
    with pytest.raises(UserError):
        from lit_ft.training.consolidate import load_any_checkpoint

        load_any_checkpoint(ckpt)


def test_estimate_counts_fsdp_activation_checkpointing(tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["estimate", "--config", "configs/quickstart.yaml", "--model.backbone", str(tiny_bert), "--devices", "2"]
    outputs = []
    for extra in (["--config", "configs/strategy/fsdp.yaml"], ["--config", "configs/strategy/fsdp.yaml",
                  "--trainer.strategy.init_args.activation_checkpointing_policy", "null"],
                  ["--model.gradient_checkpointing", "true"]):
        main([*base, *extra])
        outputs.append(capsys.readouterr().out)
    activations = [float(o.split("activations per token: ")[1].split()[0]) for o in outputs]
    assert activations[0] == activations[2] < activations[1]  # the strategy's checkpointing counts as the model's
    assert "FSDPStrategy, 2 device(s)" in outputs[0]
