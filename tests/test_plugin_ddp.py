"""The conformance kit on a third-party regression plugin (tests/score_plugin.py): its DDP check passes a Pearson
score that 2 processes compute to float32 rounding (and fails a wrong one, printing both values), the plugin's
`ddp_kwargs` reach DistributedDataParallel, and the export check names the weights an export lost."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from lit_ft import registry
from lit_ft.ddp_options import apply_ddp_kwargs
from lit_ft.errors import UserError
from lit_ft.registry import load_plugin_module
from lit_ft.testing import Conformance, TaskConformance
from lit_ft.testing.runs import fit_and_predict, one_thread
from lit_ft.testing.tolerance import NORMALISED, metric_differences, tolerances

PLUGIN = Path(__file__).resolve().parent / "score_plugin.py"
WORDS = ["good", "bad", "film", "plot", "cast", "long", "fun"]

pytestmark = pytest.mark.usefixtures("single_thread")


def write_rows(path: Path, n: int, seed: int, scored: bool = True) -> str:
    """`n` rows {"text", "score"}: the score counts the good words less the bad ones."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
            row: dict[str, object] = {"text": " ".join(words)}
            if scored:
                row["score"] = float(words.count("good") - words.count("bad"))
            f.write(json.dumps(row) + "\n")
    return str(path)


def score_conformance(task: str, backbone: Path, out: Path) -> Conformance:
    out.mkdir(parents=True, exist_ok=True)
    recipe = out / f"{task}.yaml"
    recipe.write_text(f"""\
seed_everything: 42
model: {{task: {task}, backbone: {backbone}, learning_rate: 1.0e-3}}
data:
  class_path: lit_ft_plugin_score_plugin.{'ExtraScoreData' if task == 'score_extra' else 'ScoreData'}
  init_args:
    source: {{train: {write_rows(out / 'train.jsonl', 24, 0)}, validation: {write_rows(out / 'dev.jsonl', 12, 1)},
              predict: {write_rows(out / 'predict.jsonl', 6, 2, scored=False)}}}
    batch_size: 4
    max_length: 16
trainer: {{accelerator: cpu, logger: false}}
""")
    return Conformance(recipe=recipe, plugins=[PLUGIN], ddp_batch_size=2)


class TestScorePluginConformance(TaskConformance):
    """The whole kit; its DDP check (slow) runs the plugin's Pearson and its `find_unused_parameters` for real."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def registrations_undone(cls) -> Iterator[None]:
        """The plugin's tasks registered by the class's runs (`--plugins`) are unregistered after the class."""
        local = dict(registry._local)
        yield
        registry._local.clear()
        registry._local.update(local)

    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Conformance:
        return score_conformance("score", tiny_bert, tmp_path_factory.mktemp("score"))


@pytest.mark.usefixtures("isolated_plugins")
def test_the_ddp_check_allows_a_correlation_float_rounding_and_fails_a_wrong_value() -> None:
    load_plugin_module(str(PLUGIN))
    from lit_ft_plugin_score_plugin import ScoreTask

    known = tolerances(ScoreTask({}).metrics(), "val")
    assert known["val/pearson"] is NORMALISED
    one = {"val/pearson": 0.08996, "val/mse": 1.25, "val/loss": 1.25}
    # the values of the report: Pearson r of a 2-step model on 1 and on 2 processes
    assert metric_differences(one, {**one, "val/pearson": 0.08985}, known) == []
    wrong = metric_differences(one, {**one, "val/pearson": 0.0950, "val/mse": 1.2505}, known)
    assert wrong == [
        "val/mse: 1 process 1.25, 2 processes 1.2505 (difference 0.0005; tolerance rel 0.0001, abs 1e-06 (summed))",
        "val/pearson: 1 process 0.08996, 2 processes 0.095 (difference 0.00504; tolerance rel 0.01, abs 0.001 "
        "(normalised))",
    ]
    loose = tolerances(ScoreTask({}).metrics(), "val", {"pearson": (0.1, 0.01)})
    assert metric_differences(one, {**one, "val/pearson": 0.0950}, loose) == []
    assert metric_differences(one, {"val/pearson": 0.08996}, known) == ["val/loss: logged by only the 1-process run",
                                                                         "val/mse: logged by only the 1-process run"]


@pytest.mark.usefixtures("isolated_plugins")
def test_a_plugin_ddp_kwargs_reach_a_ddp_strategy_and_the_user_value_wins() -> None:
    load_plugin_module(str(PLUGIN))
    strategy = DDPStrategy()  # what `--trainer.strategy ddp` builds
    assert apply_ddp_kwargs(strategy, "score") == {"find_unused_parameters": True}
    assert strategy._ddp_kwargs == {"find_unused_parameters": True}  # what Lightning gives DistributedDataParallel
    own = DDPStrategy(find_unused_parameters=False, static_graph=False)
    assert apply_ddp_kwargs(own, "score") == {} and own._ddp_kwargs["find_unused_parameters"] is False
    assert apply_ddp_kwargs(DDPStrategy(), "classification") == {}

    from lit_ft_plugin_score_plugin import ScoreTask

    class Misspelt(ScoreTask):
        name = "score_misspelt"
        ddp_kwargs = {"find_unused_params": True}

    registry.register_task(Misspelt)
    for strategy in (DDPStrategy(), SingleDeviceStrategy("cpu")):  # checked on one device too, before any DDP run
        with pytest.raises(UserError, match="task 'score_misspelt' declares ddp_kwargs find_unused_params, which"):
            apply_ddp_kwargs(strategy, "score_misspelt")


@pytest.mark.usefixtures("isolated_plugins")
def test_the_export_check_names_the_weights_the_export_lost(tiny_bert: Path, tmp_path: Path) -> None:
    conformance = score_conformance("score_extra", tiny_bert, tmp_path / "extra")
    with one_thread():
        fitted = fit_and_predict(conformance, tmp_path / "run")
    with pytest.raises(AssertionError) as failed:
        TaskConformance().test_export_loads_in_transformers_with_the_best_weights(fitted, tmp_path)
    message = str(failed.value).splitlines()[0]
    assert "BertForSequenceClassification.from_pretrained leaves out ['calibration.bias', 'calibration.weight']" \
        in message, message
