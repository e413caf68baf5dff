"""`lit_ft report`: the HTML report of real (tiny) runs, its numbers checked against scikit-learn, seqeval and the
official SQuAD scoring, its images decoded, and the page opened in headless Chromium where it is installed.
Also the run outputs the report reads: logged learning rate and throughput, prediction records with the inputs
and gold labels, and the test predictions `lit_ft test` writes."""

from __future__ import annotations

import base64
import csv
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from builders import write_sentiment_csvs
from helpers import QUIET, cli
from matplotlib.image import imread
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from test_question_answering import RECIPE as QA_RECIPE
from test_question_answering import SENTENCES, nested, official_v2_evaluate, row
from test_token_classification import RECIPE as NER_RECIPE
from test_token_classification import source_args, write_conll

from lit_ft.commands.cli import main
from lit_ft.io import read_jsonl
from lit_ft.report.charts import bar_chart, line_chart
from lit_ft.report.history import read_history

QUICKSTART = "configs/quickstart.yaml"
QUIZ_PLUGIN = '''
from lit_ft.datamodule import TaskDataModule
from lit_ft.report.section import Section, Table
from lit_ft.task import Task


class QuizData(TaskDataModule):
    task_name = "report_quiz"


class QuizTask(Task):
    name = "report_quiz"
    datamodule = QuizData

    @classmethod
    def report_sections(cls, run):
        return [Section("Quiz analysis", tables=[Table("quiz", ["metric files"], [[len(run.metric_files)]])])]
'''
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.usefixtures("single_thread")


# ---- reading a report back -------------------------------------------------------------------------
class Page(HTMLParser):
    """The tables (by `data-table`), images and chart data of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table_classes: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.sections: list[str] = []
        self.data: dict[str, Any] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._tag = ""
        self._script = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self._tag = tag
        if tag == "table":
            self._table = a["data-table"]
            self.tables[self._table] = []
            self.table_classes[self._table] = a.get("class", "")
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(a)
        elif tag == "script" and a.get("id") == "chart-data":
            self._script = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "script":
            self._script = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._script:
            self.data = json.loads(data)
        elif self._tag == "h2":
            self.sections.append(data)
            self._tag = ""


def report(*runs: Path, output: Path) -> Page:
    main(["report", *map(str, runs), "--output", str(output)])
    return Page(output.read_text(encoding="utf-8"))


def table_dicts(page: Page, name: str) -> list[dict[str, str]]:
    head, *rows = page.tables[name]
    return [dict(zip(head, r, strict=True)) for r in rows]


def csv_columns(root: Path, log: str = "csv") -> dict[str, list[tuple[int, float]]]:
    with open(root / log / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [(int(r["step"]), float(r[k])) for r in rows if r[k]] for k in rows[0] if k not in ("epoch", "step")}


# ---- runs shared by the module ---------------------------------------------------------------------
def _classification_run(root: Path, bert: Path, files: dict[str, str], *extra: str) -> Path:
    args = ["--config", QUICKSTART, "--model.backbone", str(bert), "--trainer.default_root_dir", str(root),
            "--data.init_args.source.train", files["train"], "--data.init_args.source.validation",
            files["validation"], "--data.init_args.source.test", files["test"],
            "--data.init_args.source.predict", files["test"], "--trainer.logger", "lit_ft.loggers.CSVLogger",
            "--trainer.enable_model_summary", "false"]
    cli("fit", *args, "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
        "--export.enabled", "false", *extra)
    cli("test", *args, "--ckpt_path", "best")
    return root


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_sentiment_csvs(tmp_path_factory.mktemp("sentiment"))


@pytest.fixture(scope="module")
def run_a(tiny_bert: Path, sentiment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _classification_run(tmp_path_factory.mktemp("a") / "run_a", tiny_bert, sentiment,
                               "--model.learning_rate", "3e-3")
    args = ["--config", QUICKSTART, "--model.backbone", str(tiny_bert), "--trainer.default_root_dir", str(root),
            "--data.init_args.source.predict", sentiment["test"], "--trainer.logger", "false", *QUIET]
    cli("predict", *args, "--ckpt_path", "best")  # a labelled predict split: records carry the gold labels too
    return root


@pytest.fixture(scope="module")
def run_b(tiny_bert: Path, sentiment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _classification_run(tmp_path_factory.mktemp("b") / "run_b", tiny_bert, sentiment,
                               "--model.learning_rate", "1e-3", "--data.init_args.batch_size", "32")


# ---- what runs write --------------------------------------------------------------------------------
def test_training_logs_learning_rate_and_throughput(run_a: Path) -> None:
    logged = csv_columns(run_a)
    lr = [v for _, v in logged["train/lr"]]
    assert len(lr) == 8  # 64 rows, batch 16, 2 epochs, a value per step (log_every_n_steps 1)
    # peak 3e-3, the quickstart's warmup of 10% of 8 steps (1 step), then linear decay to 0 at step 8
    assert lr == pytest.approx([0.0, *(3e-3 * (8 - s) / 7 for s in range(1, 8))], rel=1e-5)
    rates = [v for _, v in logged["train/samples_per_sec"]]
    assert len(rates) == 8 and all(r > 0 for r in rates)


def test_prediction_records_carry_the_input_and_gold_label(run_a: Path, sentiment: dict[str, str]) -> None:
    with open(sentiment["test"], newline="") as f:
        rows = list(csv.DictReader(f))
    tested = read_jsonl(run_a / "test_predictions.jsonl")
    predicted = read_jsonl(run_a / "predictions.jsonl")
    assert [r["id"] for r in tested] == [str(i) for i in range(len(rows))]  # every test row, in file order
    for t, p, source in zip(tested, predicted, rows, strict=True):
        assert list(t) == ["id", "text", "gold_label", "label", "probabilities"]
        assert (t["text"], t["gold_label"]) == (source["text"], source["label"]) == (p["text"], p["gold_label"])
        assert t["label"] == p["label"] == max(t["probabilities"], key=t["probabilities"].get)
        assert t["probabilities"] == pytest.approx(p["probabilities"], abs=1e-6)  # same model, same inputs
    accuracy = float(np.mean([r["label"] == r["gold_label"] for r in tested]))
    logged = json.loads((run_a / "metrics" / "test.json").read_text())["metrics"]["test/accuracy"]
    assert accuracy == pytest.approx(logged, abs=1e-6)


# ---- one run -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page_a(run_a: Path) -> Page:
    return report(run_a, output=run_a / "report.html")


def test_confusion_matrix_and_per_class_scores_equal_sklearn(run_a: Path, page_a: Page) -> None:
    records = read_jsonl(run_a / "test_predictions.jsonl")
    labels = ["negative", "positive"]
    gold, pred = [r["gold_label"] for r in records], [r["label"] for r in records]
    expected = confusion_matrix(gold, pred, labels=labels).tolist()
    assert len(set(pred)) == 2  # the model predicts both classes, so every cell is exercised
    counts = page_a.data["part0-confusion_matrix"]
    assert counts["labels"] == labels and counts["matrix"] == expected
    shown = page_a.tables["part0-confusion_matrix"]
    assert [[int(c) for c in r[1:]] for r in shown[1:]] == expected  # the HTML table says the same
    normalised = page_a.data["part0-confusion_matrix_normalised"]["matrix"]
    np.testing.assert_allclose(normalised, [[c / max(sum(r), 1) for c in r] for r in expected])
    p, r, f1, support = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    bars = page_a.data["part0-per_class_scores"]["values"]
    assert bars["precision"] == pytest.approx(p) and bars["recall"] == pytest.approx(r)
    assert bars["f1"] == pytest.approx(f1)
    assert [int(row["support"]) for row in table_dicts(page_a, "part0-per_class")] == support.tolist()


def test_most_confident_errors_are_the_surest_wrong_predictions(run_a: Path, page_a: Page) -> None:
    records = read_jsonl(run_a / "test_predictions.jsonl")
    wrong = [r for r in records if r["label"] != r["gold_label"]]
    wrong.sort(key=lambda r: -max(r["probabilities"].values()))  # stable: ties keep the file order
    shown = table_dicts(page_a, "part0-confident_errors")
    assert wrong and [row["id"] for row in shown] == [r["id"] for r in wrong[:10]]
    assert shown[0]["text"] == wrong[0]["text"] and shown[0]["gold"] == wrong[0]["gold_label"]


def test_curves_hold_the_logged_values_and_mark_the_best_checkpoint(run_a: Path, page_a: Page) -> None:
    logged = csv_columns(run_a)
    loss = page_a.data["part0-curve_loss"]
    np.testing.assert_allclose(loss["lines"]["train/loss"], logged["train/loss"], rtol=1e-6)
    np.testing.assert_allclose(loss["lines"]["val/loss"], logged["val/loss"], rtol=1e-6)
    np.testing.assert_allclose(page_a.data["part0-curve_learning_rate"]["lines"]["train/lr"], logged["train/lr"])
    assert "part0-curve_throughput" in page_a.data and "part0-curve_f1_by_label" in page_a.data
    pointer = json.loads((run_a / "checkpoints" / "best.json").read_text())
    step = int(pointer["best"].split("step=")[1].split(".")[0])
    marked = loss["mark_step"]
    # the validation that chose the checkpoint: its accuracy is the checkpoint's score
    assert marked == max(s for s, _ in logged["val/accuracy"] if s <= step)
    assert dict(logged["val/accuracy"])[marked] == pytest.approx(pointer["score"])
    best = table_dicts(page_a, "part0-best_checkpoint")[0]
    assert best["checkpoint"] == pointer["best"] and best["monitor"] == "val/accuracy"
    metrics = {row["metric"]: row for row in table_dicts(page_a, "part0-metrics")}
    assert float(metrics["val/accuracy"]["final"]) == pytest.approx(logged["val/accuracy"][-1][1], abs=1e-4)


def test_images_are_inline_pngs_of_their_stated_size_and_not_blank(run_a: Path, page_a: Page) -> None:
    files = sorted((run_a / "report_files").glob("*.png"))
    assert len(page_a.images) == len(files) == len(page_a.data) >= 10
    on_disk = json.loads((run_a / "report_files" / "data.json").read_text())
    assert on_disk == page_a.data
    for img in page_a.images:
        name = img["data-chart"]
        png = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert png == (run_a / "report_files" / f"{name}.png").read_bytes()
        pixels = imread(run_a / "report_files" / f"{name}.png")
        height, width = pixels.shape[:2]
        assert [width, height] == page_a.data[name]["pixels"] == [int(img["width"]), int(img["height"])]
        assert pixels[..., :3].std() > 0.01  # drawn on, not a blank canvas
    assert {"Summary", "Curves", "Classification analysis"} <= set(page_a.sections)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")
def test_headless_chromium_renders_every_image_offline(run_a: Path, page_a: Page, tmp_path: Path) -> None:
    page = run_a / "report.html"
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert f'data-images-decoded="{len(page_a.images)}"' in dom  # the browser decoded every inline PNG
    rendered = Page(dom)
    assert rendered.tables["part0-confusion_matrix"] == page_a.tables["part0-confusion_matrix"]
    shot = tmp_path / "shot.png"
    subprocess.run([*base, "--window-size=1200,900", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120)
    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1200) and pixels[..., :3].std() > 0.01


# ---- several runs ------------------------------------------------------------------------------------
def test_several_runs_overlay_curves_and_list_differing_config_keys(run_a: Path, run_b: Path,
                                                                    tmp_path: Path) -> None:
    page = report(run_a, run_b, output=tmp_path / "both.html")
    compare = "part2"
    lines = page.data[f"{compare}-compare_loss"]["lines"]
    assert set(lines) == {"run_a: train/loss", "run_a: val/loss", "run_b: train/loss", "run_b: val/loss"}
    np.testing.assert_allclose(lines["run_b: train/loss"], csv_columns(run_b)["train/loss"], rtol=1e-6)
    differing = {row["config key"]: row for row in table_dicts(page, f"{compare}-config_differences")}
    assert set(differing) == {"model.learning_rate", "data.init_args.batch_size"}
    assert (differing["model.learning_rate"]["run_a"], differing["model.learning_rate"]["run_b"]) == ("0.003",
                                                                                                     "0.001")
    metrics = {row["metric"]: row for row in table_dicts(page, f"{compare}-compare_metrics")}
    for name, root in (("run_a", run_a), ("run_b", run_b)):
        values = [v for _, v in csv_columns(root)["val/loss"]]
        assert float(metrics["val/loss"][f"{name} final"]) == pytest.approx(values[-1], rel=1e-3)
        assert float(metrics["val/loss"][f"{name} best"]) == pytest.approx(min(values), rel=1e-3)
    assert "part0-confusion_matrix" in page.data and "part1-confusion_matrix" in page.data


# ---- an SFT run: a few optimizer steps per epoch, code in its samples ----------------------------------------
SFT_RECIPE = "configs/sft_alpaca.yaml"
CODE = ["def add(a, b):\n    return a + b", "for i in range(3):\n    if i:\n        print(i)  # two  spaces",
        "class A:\n    pass"]


@pytest.fixture(scope="module")
def sft_run(llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The alpaca recipe as shipped (accumulation 4, log_every_n_steps 5, 3 epochs) on 24 rows: 2 optimizer steps
    an epoch, fewer than the log interval."""
    tmp = tmp_path_factory.mktemp("sft")
    rows = [{"instruction": f"write program {i}", "input": "", "output": CODE[i % len(CODE)]} for i in range(24)]
    (tmp / "code.json").write_text(json.dumps(rows))
    cli("fit", "--config", SFT_RECIPE, "--model.backbone", str(llama), "--data.init_args.source.train",
        str(tmp / "code.json"), "--model.task_options.max_new_tokens", "4", "--trainer.default_root_dir",
        str(tmp / "run"), "--export.enabled", "false", *QUIET)
    return tmp / "run"


@pytest.fixture(scope="module")
def page_sft(sft_run: Path) -> Page:
    return report(sft_run, output=sft_run / "report.html")


def metric_file_steps(root: Path) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["step"] for p in (root / "metrics").glob("val_*.json")}


def test_sft_run_with_short_epochs_logs_and_draws_its_training_curves(sft_run: Path, page_sft: Page) -> None:
    every = yaml.safe_load((sft_run / "config.yaml").read_text())["trainer"]["log_every_n_steps"]
    epoch_ends = [metric_file_steps(sft_run)[f"val_epoch_{n}"] for n in (1, 2, 3)]
    assert epoch_ends == [2, 4, 6] and every == 5  # an epoch is shorter than the recipe's log interval
    logged = csv_columns(sft_run, "logs")
    for key in ("train/loss", "train/lr", "train/tokens_per_sec"):
        assert [s for s, _ in logged[key]] == epoch_ends, key  # a point at each epoch's last step
    np.testing.assert_allclose(page_sft.data["part0-curve_loss"]["lines"]["train/loss"], logged["train/loss"])
    np.testing.assert_allclose(page_sft.data["part0-curve_learning_rate"]["lines"]["train/lr"], logged["train/lr"])
    throughput = page_sft.data["part0-curve_throughput"]["lines"]["train/tokens_per_sec"]
    assert [s for s, _ in throughput] == epoch_ends and all(v > 0 for _, v in throughput)


@pytest.mark.parametrize("kind", ["classification", "sft"])
def test_validation_steps_agree_between_log_metric_files_samples_and_best_checkpoint(
        kind: str, request: pytest.FixtureRequest) -> None:
    root, log = (request.getfixturevalue("run_a"), "csv") if kind == "classification" else \
        (request.getfixturevalue("sft_run"), "logs")
    page: Page = request.getfixturevalue("page_a" if kind == "classification" else "page_sft")
    logged = csv_columns(root, log)
    validations = [s for s, _ in logged["val/loss"]]
    files = metric_file_steps(root)
    assert validations == sorted(files.values()) and len(validations) >= 2
    for name, step in files.items():  # the same validation: its values are the file's
        record = json.loads((root / "metrics" / f"{name}.json").read_text())["metrics"]
        assert dict(logged["val/loss"])[step] == pytest.approx(record["val/loss"], rel=1e-5)
    samples = sorted(int(p.stem.rpartition("_step")[2]) for p in (root / "samples").glob("*_step*.jsonl"))
    assert samples == (validations if kind == "sft" else [])  # classification writes no sample tables
    assert all(f"part0-val_samples_step{s}" in page.tables for s in samples)
    pointer = json.loads((root / "checkpoints" / "best.json").read_text())
    step = int(re.search(r"step=(\d+)", pointer["best"]).group(1))  # type: ignore[union-attr]
    assert step in validations and dict(logged[pointer["monitor"]])[step] == pytest.approx(pointer["score"])
    assert int(table_dicts(page, "part0-best_checkpoint")[0]["step"]) == step
    assert {chart["mark_step"] for chart in page.data.values() if "mark_step" in chart} == {step}


def test_sample_tables_keep_the_whitespace_of_generated_code(sft_run: Path, page_sft: Page) -> None:
    path = max((sft_run / "samples").glob("val_samples_step*.jsonl"), key=lambda p: int(p.stem.rpartition("_step")[2]))
    rows, name = read_jsonl(path), f"part0-{path.stem}"
    shown = table_dicts(page_sft, name)
    assert [r["reference"] for r in shown] == [r["reference"] for r in rows]
    assert [r["prompt"] for r in shown] == [r["prompt"] for r in rows]
    assert any("\n    " in r["reference"] for r in rows) and all("\n" in r["prompt"] for r in rows)
    # the browser keeps line breaks and indentation of the cells as written (it collapses them by default)
    assert page_sft.table_classes[name] == "keep-whitespace"
    style = (sft_run / "report.html").read_text().split("<style>")[1].split("</style>")[0]
    assert re.search(r"table\.keep-whitespace td \{[^}]*white-space: pre-wrap", style)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")
def test_headless_chromium_shows_sample_code_with_its_indentation(sft_run: Path, page_sft: Page,
                                                                    tmp_path: Path) -> None:
    """The text a reader sees (`innerText`, which follows the CSS `white-space`) equals the sample as written."""
    path = max((sft_run / "samples").glob("val_samples_step*.jsonl"), key=lambda p: int(p.stem.rpartition("_step")[2]))
    probe = sft_run / "probe.html"
    probe.write_text(
        '<!doctype html><html><body><iframe id="f" src="report.html" width="1200" height="900"></iframe><script>'
        "window.addEventListener('load', function () { var doc = document.getElementById('f').contentDocument;"
        f"var cells = doc.querySelectorAll('table[data-table=\"part0-{path.stem}\"] tbody td');"
        "var out = document.createElement('pre'); out.id = 'seen';"
        "out.textContent = JSON.stringify(Array.prototype.map.call(cells, function (c) { return c.innerText; }));"
        "document.body.appendChild(out); });</script></body></html>")
    browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    seen = json.loads(html.unescape(dom.split('<pre id="seen">')[1].split("</pre>")[0]))
    written = [cell for row in page_sft.tables[f"part0-{path.stem}"][1:] for cell in row]
    assert seen == written and any("\n    return a + b" in cell for cell in seen)


def test_axis_labels_carry_whole_values_and_legends_sit_beside_the_plot(page_a: Page, page_sft: Page) -> None:
    def beside(legend: list[float], area: list[float], pixels: list[int]) -> bool:
        return legend[0] >= area[2] and legend[2] <= pixels[0] and 0 <= legend[1] < legend[3] <= pixels[1]

    charts = {**page_a.data, **page_sft.data}
    for name, chart in charts.items():
        drawn = chart["drawn"]
        assert set(drawn["offsets"]) == {""}, name  # no `+9.026` or `1e-5` in an axis corner
        if "lines" in chart or "values" in chart:
            ticks = [float(t) for t in drawn["ticks"]["y"]]  # every label a number, each told apart
            assert len(set(ticks)) == len(ticks) >= 2, name
            np.testing.assert_allclose(np.diff(ticks), ticks[1] - ticks[0], rtol=1e-6)  # `1.75e-05`, not `1.7e-05`
            assert beside(drawn["legend"], drawn["plot_area"], chart["pixels"]), name
    assert "values" in charts["part0-per_class_scores"]  # the bars of per-class scores among them

    # a curve that moves in its fifth digit (a steady throughput), where matplotlib writes the ticks as `+9.026e3`
    steady = line_chart("t", "throughput", {"train/tokens_per_sec": [(1, 9026.1), (2, 9026.15), (3, 9026.3)]})
    ticks = [float(t) for t in steady.data["drawn"]["ticks"]["y"]]
    assert 9026 < min(ticks) < max(ticks) < 9027 and set(steady.data["drawn"]["offsets"]) == {""}
    rates = line_chart("r", "learning rate", {"train/lr": [(1, 2e-5), (2, 1.3e-5), (3, 2e-6)]})
    ticks = [float(t) for t in rates.data["drawn"]["ticks"]["y"]]
    assert 0 <= min(ticks) < max(ticks) <= 2.5e-5 and set(rates.data["drawn"]["offsets"]) == {""}
    np.testing.assert_allclose(np.diff(ticks), ticks[1] - ticks[0], rtol=1e-6)
    full = bar_chart("b", "scores", ["negative", "positive"], {"precision": [1.0, 0.98], "recall": [1.0, 1.0]})
    assert beside(full.data["drawn"]["legend"], full.data["drawn"]["plot_area"], full.data["pixels"])
    many = line_chart("m", "f1 by label", {f"val/f1/label_{i}": [(1, i / 40), (2, i / 30)] for i in range(40)})
    assert beside(many.data["drawn"]["legend"], many.data["drawn"]["plot_area"], many.data["pixels"])


# ---- other tasks -------------------------------------------------------------------------------------
def test_ner_report_scores_each_entity_type_as_seqeval(tagger_bert: Path, tmp_path: Path) -> None:
    from seqeval.metrics import classification_report

    files = {"train": write_conll(tmp_path / "train.conll", 48, 0), "dev": write_conll(tmp_path / "dev.txt", 24, 1)}
    root = tmp_path / "ner"
    common = ["--config", str(NER_RECIPE), "--model.backbone", str(tagger_bert), *source_args(files),
              "--data.init_args.tag_scheme", "IOB1", "--data.init_args.batch_size", "16",
              "--trainer.default_root_dir", str(root), "--trainer.logger", "false", *QUIET[2:]]
    cli("fit", *common, "--model.learning_rate", "3e-3", "--trainer.max_steps", "3", "--export.enabled", "false")
    cli("test", *common, "--data.init_args.source.test", files["dev"], "--ckpt_path", "best")
    records = read_jsonl(root / "test_predictions.jsonl")
    assert len(records) == 24 and all(len(r["gold_tags"]) == len(r["tokens"]) == len(r["tags"]) for r in records)
    page = report(root, output=root / "report.html")
    expected = classification_report([r["gold_tags"] for r in records], [r["tags"] for r in records],
                                     output_dict=True, zero_division=0)
    shown = {row["entity type"]: row for row in table_dicts(page, "part0-per_type")}
    gold_types = {k for k in expected if k.isupper()}
    assert gold_types <= set(shown)
    for t in gold_types:
        assert float(shown[t]["f1"]) == pytest.approx(expected[t]["f1-score"], abs=1e-3)
        assert int(shown[t]["support"]) == expected[t]["support"]
    errors = table_dicts(page, "part0-errors")
    wrong = [r for r in records if r["gold_tags"] != r["tags"]]
    assert len(errors) == min(10, len(wrong)) and (not errors or errors[0]["id"] == wrong[0]["id"])


def test_qa_report_scores_by_answer_presence_as_the_official_script(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [row(i, s, s.split()[i % 3]) for i, s in enumerate(SENTENCES * 2)]
    rows += [row(100 + i, s, None, "where did it go") for i, s in enumerate(SENTENCES)]
    squad = nested(rows, True)
    (tmp_path / "v2.json").write_text(json.dumps(squad))
    data, root = str(tmp_path / "v2.json"), tmp_path / "qa"
    common = ["--config", QA_RECIPE, "--model.backbone", str(tiny_bert), "--data.init_args.source.hub", "null",
              "--data.init_args.max_length", "48", "--data.init_args.stride", "16", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(root), *QUIET, "--model.task_options.version_2_with_negative", "true"]
    cli("fit", *common, "--data.init_args.source.train", data, "--data.init_args.source.validation", data,
        "--trainer.max_steps", "2", "--export.enabled", "false")
    cli("test", *common, "--data.init_args.source.test", data, "--data.init_args.source.train", "null",
        "--data.init_args.source.validation", "null", "--ckpt_path", "best")
    records = read_jsonl(root / "test_predictions.jsonl")
    assert (root / "test_predictions.json").is_file() and not (root / "predictions.json").exists()
    by_id = {r["id"]: r for r in rows}
    for r in records:
        assert (r["question"], r["context"]) == (by_id[r["id"]]["question"], by_id[r["id"]]["context"])
        assert r["gold_answers"] == by_id[r["id"]]["answers"]["text"]
    official = official_v2_evaluate(squad["data"], {r["id"]: r["answer"] for r in records})
    page = report(root, output=root / "report.html")
    kinds = {row["question"]: row for row in table_dicts(page, "part0-by_has_answer")}
    assert int(kinds["no answer"]["questions"]) == 5 and int(kinds["has answer"]["questions"]) == 10
    for kind, prefix in (("has answer", "HasAns"), ("no answer", "NoAns")):
        assert float(kinds[kind]["f1"]) == pytest.approx(official[f"{prefix}_f1"], abs=1e-2)
        assert float(kinds[kind]["exact match"]) == pytest.approx(official[f"{prefix}_exact"], abs=1e-2)
    by_length = {r["gold answer length"]: int(r["questions"]) for r in table_dicts(page, "part0-by_answer_length")}
    assert by_length == {"no answer": 5, "1 word": 10}  # every gold answer here is one word
    lengths = page.data["part0-scores_by_answer_length"]
    assert lengths["categories"][0] == "no answer" and lengths["categories"][1] == "1 word"


# ---- generic parts and what else a run may hold ----------------------------------------------------------
def test_sample_tables_unknown_tasks_and_a_third_party_task_section(run_a: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(run_a, root, ignore=shutil.ignore_patterns("*.ckpt", "report*"))
    samples = [{"prompt": "say <b>hi</b>", "reference": "hi", "prediction": "hello"}] * 3
    (root / "samples").mkdir()
    (root / "samples" / "val_samples_step4.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["model"]["task"] = "not_installed_here"
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    page = report(root, output=tmp_path / "r.html")
    assert page.tables["part0-val_samples_step4"] == [["prompt", "reference", "prediction"],
                                                       *[["say <b>hi</b>", "hi", "hello"]] * 3]
    assert "Curves" in page.sections and "Classification analysis" not in page.sections
    assert "Task analyses" in page.sections  # says why: the task is not installed

    # a third-party task (a local plugin module) adds its own section through the plugin contract
    (tmp_path / "quiz.py").write_text(QUIZ_PLUGIN)
    config["model"]["task"] = "report_quiz"
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    main(["report", str(root), "--output", str(tmp_path / "q.html"), "--plugins", str(tmp_path / "quiz.py")])
    quiz = Page((tmp_path / "q.html").read_text())
    assert quiz.tables["part0-quiz"] == [["metric files"], [str(len(list((root / "metrics").glob("*.json"))))]]
    assert {"Summary", "Curves", "Quiz analysis", "Samples per evaluation"} <= set(quiz.sections)


def test_tensorboard_log_is_read_when_there_is_no_csv(tmp_path: Path) -> None:
    from lit_ft.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path), name="tensorboard")
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "train/lr": 1e-4}, step=step)
    logger.log_metrics({"val/accuracy": 0.75}, step=2)
    logger.finalize("success")
    found = read_history(tmp_path, {})
    np.testing.assert_allclose(found.series["train/loss"], [(0, 1.0), (1, 0.5), (2, 1 / 3)], rtol=1e-6)
    np.testing.assert_allclose(found.series["val/accuracy"], [(2, 0.75)])
    assert found.source.startswith("tensorboard")


def test_bad_run_directories_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for argv, message in (
        (["report", str(tmp_path / "missing")], "does not exist"),
        (["report", str(tmp_path / "empty")], "holds no lit_ft run"),
        (["report", str(tmp_path / "empty"), "--output", str(tmp_path)], "is a directory"),
    ):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lit_ft: error: ") and message in err and "\n" not in err
    assert not list(tmp_path.glob("*.html"))


def test_multi_label_and_regression_sections_equal_sklearn() -> None:
    from lit_ft.tasks.classification_report import multi_label_section, regression_section

    rng = np.random.default_rng(0)
    names = ["sports", "politics", "tech"]
    gold, pred = rng.random((40, 3)) > 0.5, rng.random((40, 3)) > 0.4
    records = [{"id": str(i), "text": f"t{i}", "gold_labels": [n for n, g in zip(names, gs, strict=True) if g],
                "labels": [n for n, p in zip(names, ps, strict=True) if p],
                "probabilities": dict(zip(names, rng.random(3).tolist(), strict=True))}
               for i, (gs, ps) in enumerate(zip(gold, pred, strict=True))]
    section = multi_label_section("test_predictions.jsonl", records)
    p, r, f1, support = precision_recall_fscore_support(gold, pred, zero_division=0)
    values = section.charts[0].data["values"]
    np.testing.assert_allclose([values["precision"], values["recall"], values["f1"]], [p, r, f1])
    assert [row[-1] for row in section.tables[0].rows] == support.tolist()
    wrong = [rec["id"] for rec, g, q in zip(records, gold, pred, strict=True) if (g != q).any()]
    assert [row[0] for row in section.tables[1].rows] == wrong[:10]

    scores = [{"id": str(i), "text": "x", "gold_score": float(g), "score": float(s)}
              for i, (g, s) in enumerate(zip(rng.random(20) * 5, rng.random(20) * 5, strict=True))]
    largest = regression_section("test_predictions.jsonl", scores).tables[0].rows
    errors = sorted((abs(s["score"] - s["gold_score"]), s["id"]) for s in scores)[::-1]
    assert [row[0] for row in largest] == [i for _, i in errors[:10]]
