"""Shared fixtures: tiny randomly initialised models and tokenizers written by the tests, small data files."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from builders import make_tiny_bert, write_sentiment_csvs
from sft_fixtures import make_causal_lm

from lit_ft import registry

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def sentiment_files(tmp_path: Path) -> dict[str, str]:
    return write_sentiment_csvs(tmp_path / "data")


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-style causal LM with an offline byte-level tokenizer and a chat template."""
    return make_causal_lm(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def tagger_bert(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_bert` with its vocabulary really loaded: under transformers 5 `BertTokenizerFast(vocab_file=...)`
    ignores the file (every word becomes [UNK]), so the tokenizer is rebuilt with `vocab=`."""
    from transformers import BertTokenizerFast

    out = tmp_path_factory.mktemp("tagger_bert")
    shutil.copytree(tiny_bert, out, dirs_exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out / name).unlink(missing_ok=True)
    BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def stand_in_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models standing in for the recipes' backbones (tests/stand_ins.py), built once per session."""
    from stand_ins import build_models

    return build_models(tmp_path_factory.mktemp("stand_ins"))


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine the thread hand-offs make each
    small op some 20x slower. Modules opt in with `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def isolated_plugins() -> Iterator[None]:
    """Undo the registration and the sys.path entry of a loaded plugin package. Its modules stay imported: its data
    module stays a subclass of TaskDataModule, which jsonargparse imports by name when it lists data modules."""
    local, path = dict(registry._local), list(sys.path)
    yield
    registry._local.clear()
    registry._local.update(local)
    sys.path[:] = path


@pytest.fixture(scope="session")
def served_chat_run(llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step sft_chat run of the tiny Llama (tests/served_runs.py)."""
    from served_runs import fit_chat_run

    return fit_chat_run(tmp_path_factory.mktemp("served_chat_run"), llama)


@pytest.fixture(scope="session")
def served_classifier_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step quickstart classification run of the tiny BERT (tests/served_runs.py)."""
    from served_runs import fit_classifier_run

    return fit_classifier_run(tmp_path_factory.mktemp("served_classifier_run"), tiny_bert)
