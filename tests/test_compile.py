"""`model.compile`: a compiled fit saves, resumes and exports exactly as an uncompiled one (tiny Llama, 2 steps).

The fits are marked slow: Inductor compiles the training and evaluation graphs with the system's C++ compiler,
1-2.5 minutes on 2 busy CPU cores the first time (its on-disk cache makes later runs some 30 s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sft_fixtures import write_standins
from transformers import AutoModelForCausalLM

from lit_ft.commands.cli import main, run
from lit_ft.compile import compiler_problem
from lit_ft.training.checkpoint import find_checkpoint
from lit_ft.training.export import load_checkpoint_module
from lit_ft.training.safe_load import load_checkpoint_file

pytestmark = pytest.mark.usefixtures("single_thread")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NO_COMPILER = compiler_problem(cuda=False)


def fit(root: Path, llama: Path, train: str, *extra: str) -> Any:
    return run(["fit", "--config", str(CONFIGS / "sft_chat.yaml"), "--model.backbone", str(llama),
                "--data.init_args.source.train", train, "--model.task_options.max_new_tokens", "2",
                "--model.task_options.generate_examples", "1", "--trainer.precision", "32-true",
                "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", *extra])


@pytest.fixture(scope="module")
def runs(llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if NO_COMPILER:
        pytest.skip(NO_COMPILER)
    root = tmp_path_factory.mktemp("compile")
    train = write_standins(root / "data")["chat"]
    torch._dynamo.reset()
    compiled = fit(root / "compiled", llama, train, "--model.compile", "true")
    graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    plain = fit(root / "plain", llama, train)
    return {"compiled": compiled, "plain": plain, "graphs": graphs, "root": root, "train": train}


@pytest.mark.slow
def test_compiled_fit_runs_compiled_and_saves_plain_parameter_names(runs: dict[str, Any]) -> None:
    assert runs["graphs"] > 0 and runs["compiled"].model.compiled_forward.compiled is not None  # dynamo really ran
    assert runs["plain"].model.compiled_forward.compiled is None
    states = {}
    for name in ("compiled", "plain"):
        checkpoint = load_checkpoint_file(find_checkpoint(str(runs["root"] / name), "last"))
        assert checkpoint["hyper_parameters"]["compile"] is (name == "compiled")
        states[name] = checkpoint["state_dict"]
    assert list(states["compiled"]) == list(states["plain"])
    assert not [k for k in states["compiled"] if "_orig_mod" in k]
    assert all(states["compiled"][k].shape == v.shape for k, v in states["plain"].items())


@pytest.mark.slow
def test_export_of_compiled_run_loads_with_transformers_and_gives_the_checkpoint_logits(
        runs: dict[str, Any], tmp_path: Path) -> None:
    main(["export", str(runs["root"] / "compiled"), "--output_dir", str(tmp_path / "hf")])
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    restored = load_checkpoint_module(find_checkpoint(str(runs["root"] / "compiled"), "best"))
    model = restored.exportable_model().eval()
    ids = torch.tensor([[1, 7, 9, 11, 5, 2]])
    with torch.no_grad():
        want, got = model(input_ids=ids).logits, exported(input_ids=ids).logits
    assert torch.equal(got, want)
    backbone = AutoModelForCausalLM.from_pretrained(restored.hparams["backbone"]).eval()
    with torch.no_grad():
        assert not torch.equal(backbone(input_ids=ids).logits, got)  # the trained weights, not the backbone's


@pytest.mark.slow
def test_compiled_run_resumes_from_last(runs: dict[str, Any]) -> None:
    resumed = fit(runs["root"] / "compiled", Path(runs["compiled"].model.hparams["backbone"]), runs["train"],
                  "--model.compile", "true", "--ckpt_path", "last", "--trainer.max_steps", "3",
                  "--trainer.limit_train_batches", "3")
    assert resumed.trainer.global_step == 3 and resumed.model.compiled_forward.compiled is not None


def test_fit_without_a_compiler_stops_before_loading(monkeypatch: pytest.MonkeyPatch, llama: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from torch._inductor import config

    monkeypatch.setattr(config.cpp, "cxx", ("/nonexistent/c++",))  # what $CXX names when Inductor is imported
    train = write_standins(tmp_path / "data")["chat"]
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(CONFIGS / "sft_chat.yaml"), "--model.backbone", str(llama),
              "--data.init_args.source.train", train, "--trainer.default_root_dir", str(tmp_path / "run"),
              "--model.compile", "true"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lit_ft: error: model.compile: torch.compile on the CPU needs a C++ compiler")
    assert "set model.compile false" in err[-1] and not (tmp_path / "run").exists()


def test_estimate_is_the_same_with_compile(llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_standins(tmp_path / "data")["chat"]
    outputs = []
    for extra in ([], ["--model.compile", "true"]):
        main(["estimate", "--config", str(CONFIGS / "sft_chat.yaml"), "--model.backbone", str(llama),
              "--data.init_args.source.train", train, *extra])
        outputs.append(capsys.readouterr().out)
    # all but the process's resident memory (measured in this process, call by call) and the total that holds it
    tensors = [[line for line in out.splitlines() if not line.startswith(("peak memory", "  process"))]
               for out in outputs]
    assert tensors[0] == tensors[1] and "peak memory per device" in outputs[0] and "  weights" in outputs[0]
