"""Token classification: tag schemes, CoNLL reading, label alignment, seqeval-exact metrics, predict == pipeline."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import datasets
import pytest
import torch
from builders import shared_data
from helpers import token_cross_entropy
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

from lit_ft.commands.cli import run
from lit_ft.io import read_jsonl
from lit_ft.monitor import monitorable
from lit_ft.rows import ROW
from lit_ft.source import DataSource
from lit_ft.tasks.token_classification import TokenClassificationData, TokenClassificationTask
from lit_ft.tasks.token_classification.conll import read_sentences
from lit_ft.tasks.token_classification.metrics import EntityScores, TokenAccuracy, word_predictions
from lit_ft.tasks.token_classification.schemes import Entity, convert, get_entities, label_set, render

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "ner_conll2003.yaml"
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu"]
TYPES = ["PER", "LOC", "ORG"]


# ---- fixtures ----------------------------------------------------------------------------------
def _sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """Words from the tiny vocabulary (one sub-token each), IOB1 tags: john = PER, cities = LOC, 'red cat' = ORG."""
    tokens, tags = [], []
    for _ in range(rng.randint(2, 6)):
        r = rng.random()
        if r < 0.2:
            tokens.append("john"), tags.append("I-PER")
        elif r < 0.4:
            tokens.append(rng.choice(["paris", "london", "berlin"])), tags.append("I-LOC")
        elif r < 0.5:
            tokens += rng.choice([["red", "cat"], ["blue", "dog"]])
            tags += ["B-ORG" if tags and tags[-1].endswith("ORG") else "I-ORG", "I-ORG"]
        else:
            tokens.append(rng.choice("the a film was good and it visited works at in of to".split())), tags.append("O")
    return tokens, tags


def write_conll(path: Path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(n):
        tokens, tags = _sentence(rng)
        lines += [f"{t} NN I-NP {g}" for t, g in zip(tokens, tags, strict=True)] + [""]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def conll_files(tmp_path: Path) -> dict[str, str]:
    return {"train": write_conll(tmp_path / "train.conll", 160, 0), "dev": write_conll(tmp_path / "dev.txt", 40, 1)}


def source_args(files: dict[str, str], predict: str = "null") -> list[str]:
    return ["--data.init_args.source.hub", "null", "--data.init_args.source.train", files["train"],
            "--data.init_args.source.validation", files["dev"], "--data.init_args.source.test", "null",
            "--data.init_args.source.predict", predict]


# ---- schemes -----------------------------------------------------------------------------------
ADVERSARIAL = [
    ["I-PER", "I-PER", "B-PER", "O"],                # IOB1: B- only between same-type neighbours
    ["O", "I-LOC", "I-PER", "B-PER", "I-LOC"],       # I- without B-, type changes
    ["B-ORG", "I-ORG", "E-ORG", "S-ORG", "E-LOC"],   # BIOES endings, E- without B-
    ["O", "O", "B-PER"],                             # entity at sentence end
    ["I-ORG"], ["S-PER", "I-PER", "E-PER", "E-PER"], ["B-LOC", "B-LOC", "I-ORG", "E-ORG", "O", "I-LOC"], [],
]
POOL = ["O", "O", "O", *[f"{p}-{t}" for p in "BIES" for t in TYPES]]


def random_tags(rng: random.Random, n: int, pool: list[str] = POOL) -> list[str]:
    return [rng.choice(pool) for _ in range(n)]


def test_entities_equal_seqeval_on_random_and_adversarial_tags() -> None:
    rng = random.Random(0)
    cases = ADVERSARIAL + [random_tags(rng, rng.randint(0, 12)) for _ in range(500)]
    for tags in cases:
        assert [(e.type, e.start, e.end - 1) for e in get_entities(tags)] == seqeval_entities(tags), tags


def test_scheme_conversion_examples() -> None:
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    bioes = ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "S-ORG"]
    assert convert(iob1, "IOB2") == iob2 and convert(iob1, "BIO") == iob2
    assert convert(iob2, "BIOES") == bioes
    assert convert(bioes, "IOB1") == iob1
    assert convert(["O", "I-PER", "E-PER", "B-LOC"], "IOB2") == ["O", "B-PER", "I-PER", "B-LOC"]
    assert label_set(["PER", "LOC", "PER"], "BIOES") == [
        "O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_scheme_round_trips_keep_entities(scheme: str) -> None:
    rng = random.Random(1)
    for _ in range(300):
        n, pos, entities = rng.randint(0, 12), 0, []
        while pos < n:
            pos += rng.randint(0, 2)
            end = min(n, pos + rng.randint(1, 3))
            if pos < end:
                entities.append(Entity(rng.choice(TYPES), pos, end))
            pos = end
        tags = render(entities, n, scheme)
        assert get_entities(tags) == entities
        for other in ("IOB1", "IOB2", "BIOES"):
            assert convert(convert(tags, other), scheme) == tags


# ---- metrics -----------------------------------------------------------------------------------
def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(map(len, rows), default=0)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long).reshape(len(rows), width)


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES"])
def test_metrics_equal_seqeval(scheme: str) -> None:
    names = label_set(TYPES, scheme)
    rng = random.Random(2)
    index = {n: i for i, n in enumerate(names)}
    gold = [g for g in ADVERSARIAL if all(t in index for t in g)]
    gold += [random_tags(rng, rng.randint(1, 10), names + ["O"] * 3) for _ in range(300)]
    pred = [random_tags(rng, len(g), names + ["O"] * 3) if i % 4 else list(g) for i, g in enumerate(gold)]
    pred[0] = ["O"] * len(pred[0])
    entities, accuracy = EntityScores(names), TokenAccuracy()
    for lo in range(0, len(gold), 32):  # several batches, padded like the data's word labels
        target = _pad([[index[t] for t in s] for s in gold[lo : lo + 32]], -100)
        preds = _pad([[index[t] for t in s] for s in pred[lo : lo + 32]], 0)
        entities.update(preds, target)
        accuracy.update(preds, target)
    got = entities.compute()
    assert got["precision"].item() == precision_score(gold, pred)
    assert got["recall"].item() == recall_score(gold, pred)
    assert got["f1"].item() == f1_score(gold, pred)
    assert 0.2 < got["f1"].item() < 0.9
    p, r, f, _ = precision_recall_fscore_support(gold, pred, average=None)
    for i, t in enumerate(sorted(TYPES)):
        assert (got[f"precision/{t}"].item(), got[f"recall/{t}"].item(), got[f"f1/{t}"].item()) == (p[i], r[i], f[i])
    assert accuracy.compute().item() == accuracy_score(gold, pred)


def test_metrics_edge_cases_and_truncated_words() -> None:
    names = label_set(["PER"], "IOB2")  # O B-PER I-PER
    metric = EntityScores(names)
    metric.update(torch.tensor([[0, 0]]), torch.tensor([[0, 0]]))
    assert {k: v.item() for k, v in metric.compute().items()} == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "precision/PER": 0.0, "recall/PER": 0.0, "f1/PER": 0.0}
    # a word the model never saw (-1) reads as O: the gold entity is missed, the prediction ends early
    metric.update(torch.tensor([[1, 2, -1]]), torch.tensor([[1, 2, 2]]))
    assert metric.compute()["recall"].item() == recall_score([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    word_ids = torch.tensor([[-1, 0, 0, 1, 2, 2, -1], [-1, 0, 1, 1, -1, -1, -1]])
    token_preds = torch.tensor([[9, 1, 5, 2, 3, 7, 9], [9, 4, 6, 8, 9, 9, 9]])
    assert word_predictions(token_preds, word_ids, 4).tolist() == [[1, 2, 3, -1], [4, 6, -1, -1]]


# ---- reading and encoding ----------------------------------------------------------------------
def test_conll_reader(tmp_path: Path) -> None:
    path = tmp_path / "eng.sample"
    path.write_text("-DOCSTART- -X- O O\n\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n\n\n-DOCSTART- -X- O O\n"
                    "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\nBRUSSELS NNP I-NP I-LOC")
    assert list(read_sentences(path, 0, -1)) == [
        (["EU", "rejects"], ["I-ORG", "O"]), (["Peter", "Blackburn"], ["I-PER", "I-PER"]), (["BRUSSELS"], ["I-LOC"])]
    assert list(read_sentences(path, 0, 1))[0] == (["EU", "rejects"], ["NNP", "VBZ"])
    source = DataSource(train=str(path), validation=str(path), predict=str(tmp_path / "p.conll"))
    dm = TokenClassificationData(source=source, tag_column="ner", conll_tag_index=3)
    (tmp_path / "p.conll").write_text("Hello\nworld\n\nAgain\n")  # tokens only: nothing to learn from
    train = dm.raw("train")
    assert train is not None and train["ner"] == [["I-ORG", "O"], ["I-PER", "I-PER"], ["I-LOC"]]
    assert train["id"] == ["0", "1", "2"]
    predict = dm.raw("predict")
    assert predict is not None and predict.column_names == ["tokens", "id", ROW] and predict["tokens"][1] == ["Again"]
    with pytest.raises(ValueError, match="conll_tag_index"):
        list(read_sentences(path, 0, 5))


def test_tab_separated_conll_keeps_a_token_with_a_space_through_predict(tagger_bert: Path, tmp_path: Path) -> None:
    """A tab-separated line splits at tabs only, so `New York` stays one word, from reading to the predict record."""
    lines = "john\tB-PER\nvisited\tO\nnew york\tB-LOC\n\nthe\tO\ncat\tO\n"  # mixed with a space line below
    (tmp_path / "train.conll").write_text(lines + "\nsat on\tO\ndog O\n")
    (tmp_path / "p.conll").write_text("john\tO\nvisited\tO\nnew york\tO\n")
    assert list(read_sentences(tmp_path / "train.conll", 0, -1))[2] == (["sat on", "dog"], ["O", "O"])
    root = tmp_path / "run"
    common = ["--model.task", "token_classification", "--model.backbone", str(tagger_bert),
              "--data.class_path", "lit_ft.tasks.token_classification.TokenClassificationData",
              "--data.init_args.source.train", str(tmp_path / "train.conll"),
              "--data.init_args.source.validation", str(tmp_path / "train.conll"),
              "--trainer.default_root_dir", str(root), "--export.enabled", "false", *QUIET]
    fit = run(["fit", *common, "--trainer.max_steps", "1"])
    assert fit is not None and fit.datamodule.raw("train")["tokens"][0] == ["john", "visited", "new york"]
    run(["predict", *common, "--ckpt_path", "last", "--data.init_args.source.predict", str(tmp_path / "p.conll")])
    record = read_jsonl(root / "predictions.jsonl")[0]
    assert record["tokens"] == ["john", "visited", "new york"] and len(record["tags"]) == 3
    assert record["text"] == "john visited new york"


def test_alignment_truncation_and_labels(tagger_bert: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"tokens": ["johnny", "visited", "parisx"], "tags": ["B-PER", "O", "B-LOC"]},
            {"tokens": ["the"] * 20 + ["john"], "tags": ["O"] * 20 + ["B-PER"]}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = DataSource(train=str(tmp_path / "train.jsonl"), validation=str(tmp_path / "train.jsonl"))
    dm = TokenClassificationData(source=source, tokenizer=str(tagger_bert), max_length=12)
    with caplog.at_level(logging.INFO):
        features = dm.features("train")
    assert features is not None and "1 of 2 sentences" in caplog.text and "max_length=12" in caplog.text
    assert dm.info == {"label_names": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], "tag_scheme": "IOB2"}
    first = features[0]
    assert dm.tokenizer.convert_ids_to_tokens(first["input_ids"]) == [
        "[CLS]", "john", "##n", "##y", "visited", "paris", "##x", "[SEP]"]
    assert first["labels"] == [-100, 3, -100, -100, 0, 1, -100, -100]
    assert first["word_labels"] == [3, 0, 1] and features["truncated"] == [False, True]
    assert features[1]["word_labels"][-1] == 3 and 20 not in features[1]["word_ids"]  # cut, but still scored
    every = TokenClassificationData(source=source, tokenizer=str(tagger_bert), label_all_subtokens=True)
    assert every.features("train")[0]["labels"] == [-100, 3, 4, 4, 0, 1, 2, -100]  # type: ignore[index]
    batch = dm.collate([features[0], features[1]])
    assert batch["word_ids"].shape == batch["inputs"]["input_ids"].shape == (2, 12)
    assert batch["word_labels"].tolist()[0] == [3, 0, 1] + [-100] * 18


def test_class_label_names_schemes_and_errors(tagger_bert: Path, tmp_path: Path) -> None:
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    data = {"tokens": [["john", "visited", "paris"], ["red", "cat"]], "ner_tags": [[1, 0, 3], [3, 4]]}
    datasets.Dataset.from_dict(data, features=features).to_parquet(str(tmp_path / "train.parquet"))
    source = DataSource(train=str(tmp_path / "train.parquet"), validation=str(tmp_path / "train.parquet"))
    kwargs = {"source": source, "tokenizer": str(tagger_bert), "tag_column": "ner_tags"}
    assert TokenClassificationData(**kwargs).info["label_names"] == names  # the hub's order is kept
    bioes = TokenClassificationData(**kwargs, target_scheme="BIOES")
    assert bioes.info["label_names"] == label_set(["PER", "LOC"], "BIOES")
    out = bioes.features("train")
    assert out is not None and [[bioes.info["label_names"][i] for i in r] for r in out["word_labels"]] == [
        ["S-PER", "O", "S-LOC"], ["B-LOC", "E-LOC"]]
    (tmp_path / "pos.jsonl").write_text(json.dumps({"tokens": ["the", "cat"], "tags": ["DT", "NN"]}) + "\n")
    pos = DataSource(train=str(tmp_path / "pos.jsonl"), validation=str(tmp_path / "pos.jsonl"))
    with pytest.raises(ValueError, match="tag 'DT' of row .* is not a IOB2 tag; set data.tag_scheme"):
        _ = TokenClassificationData(source=pos, tokenizer=str(tagger_bert)).info
    plain = TokenClassificationData(source=pos, tokenizer=str(tagger_bert), tag_scheme="none")
    assert plain.info == {"label_names": ["DT", "NN"], "tag_scheme": "none"}
    plain_task = TokenClassificationTask(plain.info)
    assert plain_task.monitor() == "token_accuracy"
    assert monitorable(plain_task.metrics()) == {"token_accuracy": "max", "loss": "min"}
    assert list(TokenClassificationTask(plain.info).metrics().keys()) == ["token_accuracy"]
    with pytest.raises(ValueError, match="target_scheme"):
        TokenClassificationData(tag_scheme="none", target_scheme="IOB2")


# ---- training, predict, export -----------------------------------------------------------------
def test_recipe_runs_on_tiny_stand_ins(tagger_bert: Path, conll_files: dict[str, str], tmp_path: Path) -> None:
    cli = run(["fit", "--config", str(RECIPE), "--model.backbone", str(tagger_bert), *source_args(conll_files),
               "--data.init_args.tag_scheme", "IOB1", "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2",
               "--trainer.default_root_dir", str(tmp_path / "run"), *QUIET])
    assert cli is not None and cli.trainer.global_step == 2
    assert cli.model.hparams.info == {"label_names": label_set(TYPES, "IOB2"), "tag_scheme": "IOB2"}
    assert "val/f1" in cli.trainer.callback_metrics and "val/f1/ORG" in cli.trainer.callback_metrics
    assert cli.model.model.config.id2label[1] == "B-LOC"


def test_predict_matches_validation_metrics_and_exported_pipeline(
    tagger_bert: Path, conll_files: dict[str, str], tmp_path: Path
) -> None:
    from transformers import pipeline

    root = str(tmp_path / "run")
    common = ["--config", str(RECIPE), "--model.backbone", str(tagger_bert),
              *source_args(conll_files, conll_files["dev"]),
              "--data.init_args.tag_scheme", "IOB1", "--data.init_args.batch_size", "16",
              "--trainer.default_root_dir", root, *QUIET]
    fit = run(["fit", *common, "--model.learning_rate", "3e-3", "--model.warmup", "0", "--trainer.max_epochs", "3"])
    assert fit is not None  # the export callback has loaded the best checkpoint's weights into fit.model
    f1 = fit.trainer.validate(fit.model, datamodule=fit.datamodule, verbose=False)[0]["val/f1"]
    run(["predict", *common, "--ckpt_path", "best"])
    records = read_jsonl(Path(root) / "predictions.jsonl")
    gold = [convert(tags, "IOB2") for _, tags in read_sentences(conll_files["dev"], 0, -1)]
    assert [r["id"] for r in records] == [str(i) for i in range(40)]
    assert f1 == f1_score(gold, [r["tags"] for r in records]) and f1 > 0.5  # learnt, and the same words scored
    first = records[0]
    assert first["text"] == " ".join(first["tokens"]) and first["entities"]
    for e in first["entities"]:
        words = " ".join(first["tokens"][e["start"] : e["end"]])
        assert first["text"][e["start_char"] : e["end_char"]] == e["text"] == words
    tagger = pipeline("token-classification", model=str(Path(root) / "export"), aggregation_strategy="simple")
    found = 0
    for record in records:
        ours = [(e["type"], e["text"], e["start_char"], e["end_char"]) for e in record["entities"]]
        theirs = [(e["entity_group"], e["word"], e["start"], e["end"]) for e in tagger(record["text"])]
        assert ours == theirs, record
        found += len(ours)
    assert found > 20


# ---- real data ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_on_conll2003_reaches_entity_f1(tmp_path: Path) -> None:
    data = shared_data("conll2003")
    cli = run(["fit", "--config", str(RECIPE), "--data.init_args.source.hub", "null",
               "--data.init_args.source.train", str(data / "eng.train.first10000"),
               "--data.init_args.source.validation", str(data / "eng.testa"),
               "--data.init_args.source.test", "null", "--data.init_args.source.predict", "null",
               "--data.init_args.tag_scheme", "IOB1", "--data.init_args.max_length", "64",
               "--model.learning_rate", "1e-4", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "150",
               "--export.enabled", "false", "--trainer.default_root_dir", str(tmp_path), *QUIET])
    assert cli is not None
    metrics = cli.trainer.callback_metrics
    assert metrics["val/f1"].item() >= 0.5, {k: round(v.item(), 3) for k, v in metrics.items()}
    assert metrics["val/token_accuracy"].item() > 0.9


def test_val_loss_is_the_mean_over_labelled_tokens_whatever_the_batching(
    tagger_bert: Path, conll_files: dict[str, str], tmp_path: Path
) -> None:
    """`val/loss` weighs each batch by its labelled sub-tokens: eval batches of 1 and of 7 sentences give the same
    value, the cross-entropy over every labelled sub-token of the split computed here from the logits."""
    losses = {}
    for size in (1, 7):
        cli = run(["validate", "--config", str(RECIPE), "--model.backbone", str(tagger_bert), *source_args(conll_files),
                   "--data.init_args.eval_batch_size", str(size),
                   "--trainer.default_root_dir", str(tmp_path / f"batch{size}"), *QUIET])
        assert cli is not None
        losses[size] = cli.trainer.callback_metrics["val/loss"].item()
    expected = token_cross_entropy(cli)
    assert losses[1] == pytest.approx(expected, rel=1e-5) and losses[7] == pytest.approx(expected, rel=1e-5)
