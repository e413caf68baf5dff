"""The bad-input catalogue: what a careless or hostile user gives lit_ft, and what lit_ft must answer.

Every case runs `lit_ft` in-process (`lit_ft.commands.cli.main`; two run as real subprocesses) and asserts:
- exit status 2 (a user error);
- stderr holds ONE error line, `lit_ft: error: ...`, the last line, that names what is wrong, where (file and
  line, key, column, value) and the fix, and no traceback or other error line;
- nothing was left half-written: no checkpoints, export or predictions; cases that need no data or model fail
  before the run directory is even created.

Cases are data (`CASES`): a name, the files to write, the command line, and the patterns the line must match.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pytest
from helpers import QUIET, cli

from lit_ft.commands.cli import main

CLASSIFICATION_DATA = "lit_ft.tasks.classification.ClassificationData"
DATA_CLASS = {
    "classification": CLASSIFICATION_DATA,
    "token_classification": "lit_ft.tasks.token_classification.TokenClassificationData",
    "question_answering": "lit_ft.tasks.question_answering.QuestionAnsweringData",
    "seq2seq": "lit_ft.tasks.seq2seq.Seq2SeqData",
    "sft": "lit_ft.tasks.sft.SFTData",
    "dpo": "lit_ft.tasks.preference.data.PreferenceData",
    "reward_model": "lit_ft.tasks.preference.data.PreferenceData",
}
GOOD_CSV = "text,label\n" + "the film was good,positive\nthe plot was dull,negative\n" * 4
GOOD_CONLL = "John B-PER\nvisited O\nParis B-LOC\n\nthe O\ncat O\n"
SQUAD_ROW = {"id": "q0", "question": "where did john go", "context": "john visited paris in may",
             "answers": {"text": ["paris"], "answer_start": [13]}}
SUMMARY_ROW = {"source": "the cat sat on the mat", "target": "cat sat"}
PC_ROW = {"prompt": "say cat twice:", "completion": " cat cat"}
PAIR_ROW = {"prompt": "say cat:", "chosen": " cat", "rejected": " mat"}


def jsonl(*rows: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Case:
    """One bad input.

    Attributes:
        task: Task whose minimal command line the case starts from.
        args: Extra command-line arguments; `{d}` is the data folder, `{root}` the run directory.
        files: Files to write in the data folder (text or bytes).
        expect: Regular expressions the error line must match (what, where, fix).
        train: The training file (in the data folder) of the base command line; None: no train split.
        command: `fit`, `validate`, `test` or `predict`.
        early: The check needs no data or model: the run directory must not even exist afterwards.
        base: Start from the task's base command line (False: only `args`, for the `lit_ft` verbs).
    """

    task: str
    args: list[str]
    expect: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    train: str | None = "train.csv"
    command: str = "fit"
    early: bool = False
    base: bool = True


def _cases() -> dict[str, Case]:  # noqa: PLR0915 - a catalogue, one statement per case
    c: dict[str, Case] = {}
    cls = "classification"
    # ---- data files that do not parse -------------------------------------------------------------
    c["empty_file"] = Case(cls, [], [r"data.source.train: '.*train.csv' is empty", "give a file with rows"],
                           {"train.csv": ""})
    c["whitespace_only_file"] = Case(cls, [], [r"'.*train.csv' is empty"], {"train.csv": "\n  \n"})
    c["header_only"] = Case(cls, [], [r"'.*train.csv' has no rows", "add rows or set data.source.train to null"],
                            {"train.csv": "text,label\n"})
    c["bad_quote"] = Case(cls, [], [r"'.*train.csv': a quoted field starting at line 3 never closes",
                                    "close the quote"],
                          {"train.csv": 'text,label\ngood,positive\n"bad film,negative\nfun,positive\n'})
    c["wrong_encoding"] = Case(cls, [], [r"'.*train.csv' is not utf-8 text at line 3",
                                         "set data.source.encoding .*latin-1"],
                               {"train.csv": b"text,label\ngood,positive\ncaf\xe9 dull,negative\n"})
    c["unknown_encoding"] = Case(cls, ["--data.init_args.source.encoding", "klingon"],
                                 ["data.source.encoding 'klingon' is not a known text encoding"],
                                 {"train.csv": GOOD_CSV}, early=True)
    c["broken_jsonl_line"] = Case(cls, [], [r"'.*train.jsonl': line 2 is not valid JSON", "fix that line"],
                                  {"train.jsonl": '{"text": "good", "label": "positive"}\n{"text": "bad",\n'
                                                  '{"text": "fun", "label": "positive"}\n'}, train="train.jsonl")
    c["broken_json_document"] = Case(cls, [], [r"'.*train.json': invalid JSON at line 3"],
                                     {"train.json": '[\n {"text": "good", "label": "positive"},\n {"text": }\n]\n'},
                                     train="train.json")
    c["semicolon_delimiter"] = Case(cls, [], [r"has one column 'text;label'", r"separated by ';'",
                                              "set data.source.delimiter ';'"],
                                    {"train.csv": "text;label\ngood;positive\nbad;negative\n"})
    c["tabs_in_csv"] = Case(cls, [], [r"separated by a tab", "set data.source.format tsv"],
                            {"train.csv": "text\tlabel\ngood\tpositive\nbad\tnegative\n"})
    c["extra_fields"] = Case(cls, [], [r"'.*train.csv': line 3 has 3 fields but the lines before have 2",
                                       "quote fields that contain the delimiter"],
                             {"train.csv": "text,label\ngood,positive\nfun, really fun,positive\n"})
    c["extra_fields_in_every_row"] = Case(cls, [], [r"'.*train.csv': line 2 has more fields than the header",
                                                    "quote fields that contain the delimiter"],
                                          {"train.csv": "text,label\nfun, really fun,positive\ngood, bad,negative\n"})
    c["corrupt_parquet"] = Case(cls, [], [r"'.*train.parquet' is not a readable parquet file"],
                                {"train.parquet": b"PAR1 this is not parquet"}, train="train.parquet")
    c["unknown_suffix"] = Case(cls, [], [r"'.*train.xlsx' has an unknown suffix", "data.source.format"],
                               {"train.xlsx": GOOD_CSV}, train="train.xlsx")
    c["missing_file"] = Case(cls, [], [r"data.source.train: '.*train.csv' does not exist", "fix the path"])
    c["directory_as_file"] = Case(cls, ["--data.init_args.source.train", "{d}"],
                                  [r"data.source.train: '.*' is a directory", "name a data file"])
    c["nested_json_without_field"] = Case(
        cls, [], [r"'.*train.json' holds one JSON object", "set data.source.field rows"],
        {"train.json": json.dumps({"version": 1, "rows": [{"text": "good", "label": "positive"}] * 4})},
        train="train.json")
    c["json_field_not_in_file"] = Case(
        cls, ["--data.init_args.source.field", "data"], [r"'.*train.json'", "data.source.field"],
        {"train.json": json.dumps({"rows": [{"text": "good", "label": "positive"}] * 4})}, train="train.json")
    c["empty_json_list"] = Case(cls, [], [r"'.*train.json' has no rows"], {"train.json": "[]"}, train="train.json")
    c["too_few_rows_to_hold_out_validation"] = Case(
        cls, ["--data.init_args.source.validation", "null"],
        [r"file '.*train.csv' has 1 rows, too few to hold out data.source.validation_fraction=0.1",
         "set data.source.validation"], {"train.csv": "text,label\ngood,positive\n"})
    c["unknown_split"] = Case(
        cls, ["--data.init_args.source.hub", "{d}/hubset", "--data.init_args.source.train", "train",
              "--data.init_args.source.validation", "validaton"],
        [r"data.source.validation: hub dataset '.*hubset' has no split 'validaton'; its splits are \['train', 'test'\]",
         "fix data.source.validation"], {"hubset/train.csv": GOOD_CSV, "hubset/test.csv": GOOD_CSV})
    c["hub_dataset_unreachable_offline"] = Case(
        cls, ["--data.init_args.source.hub", "no-such-org/no-such-set", "--data.init_args.source.train", "train"],
        [r"data.init_args.source.hub 'no-such-org/no-such-set' is not in the datasets cache and the hub cannot be "
         "asked", "set data.init_args.source.hub null"], early=True)
    c["predict_file_is_broken"] = Case(
        cls, ["--data.init_args.label_names", "[negative,positive]", "--data.init_args.source.predict",
              "{d}/inputs.jsonl"], [r"data.source.predict: '.*inputs.jsonl': line 1 is not valid JSON"],
        {"inputs.jsonl": '{"text": "good"\n'}, train=None, command="predict")
    # ---- rows and columns ------------------------------------------------------------------------
    c["missing_text_column"] = Case(cls, ["--data.init_args.text_column", "sentence"],
                                    [r"text_column 'sentence' not found in file '.*train.csv'", r"\['label', 'text'\]",
                                     "set data.text_column"], {"train.csv": GOOD_CSV})
    c["missing_label_column"] = Case(cls, ["--data.init_args.label_column", "sentiment"],
                                     [r"label_column 'sentiment' not found", "set data.label_column"],
                                     {"train.csv": GOOD_CSV})
    c["missing_text_pair_column"] = Case(cls, ["--data.init_args.text_pair_column", "hypothesis"],
                                         [r"text_pair_column 'hypothesis' not found", "set data.text_pair_column"],
                                         {"train.csv": GOOD_CSV})
    c["empty_text_cell"] = Case(cls, [], [r"row '8' of file '.*train.csv' has an empty text_column 'text'",
                                          "fill it or drop the row"],
                                {"train.csv": GOOD_CSV + ",positive\n"})
    c["whitespace_text_cell"] = Case(cls, [], [r"row '8' of file '.*train.csv' has an empty text_column 'text'"],
                                     {"train.csv": GOOD_CSV + '"   ",negative\n'})
    c["float_labels_for_classification"] = Case(
        cls, [], [r"label column 'label' of file '.*train.csv' holds fractional numbers such as 0.25",
                  "set data.problem_type regression"],
        {"train.csv": "text,label\ngood,4.75\nbad,0.25\nfun,3.5\ndull,1.0\n"})
    c["names_for_regression"] = Case(
        cls, ["--data.init_args.problem_type", "regression"],
        [r"label 'positive' of row '\d+' in file '.*train.csv' \(column 'label'\) is not a number",
         "set data.problem_type single_label"], {"train.csv": GOOD_CSV})
    c["label_not_in_label_names"] = Case(
        cls, ["--data.init_args.label_names", "[positive,neutral]"],
        [r"label \['negative'\] of row '\d+' in file '.*train.csv'", "add it to data.label_names"],
        {"train.csv": GOOD_CSV})
    c["missing_label_value"] = Case(cls, [], [r"row '8' of file '.*train.csv' has no label", "data.source.predict"],
                                    {"train.csv": GOOD_CSV + "fun film,\n"})
    c["multi_label_unknown_name"] = Case(
        cls, ["--data.init_args.problem_type", "multi_label", "--data.init_args.label_names", "[action,drama]"],
        [r"label \['comedy'\] of row '1'", "add it to data.label_names"],
        {"train.csv": 'text,label\ngood,action\nfun,"action,comedy"\n'})
    c["label_map_of_numbered_file_missing"] = Case(
        cls, ["--data.init_args.label_names", "[World,Sports]", "--data.init_args.label_map", "{1: World, 2: Sports}"],
        [r"label \['Sci'\] of row '2'", "data.label_names"], {"train.csv": "text,label\ngood,1\nfun,2\nnew,Sci\n"})
    # ---- settings checked before any data or model is loaded -------------------------------------
    early = {"early": True, "files": {"train.csv": GOOD_CSV}}
    c["batch_size_zero"] = Case(cls, ["--data.init_args.batch_size", "0"],
                                ["data.batch_size must be a positive integer \\(got 0\\)", "set data.batch_size"],
                                **early)
    c["batch_size_negative"] = Case(cls, ["--data.init_args.batch_size", "-4"], [r"data.batch_size .*\(got -4\)"],
                                    **early)
    c["eval_batch_size_zero"] = Case(cls, ["--data.init_args.eval_batch_size", "0"], [r"data.eval_batch_size"],
                                     **early)
    c["batch_size_not_a_number"] = Case(cls, ["--data.init_args.batch_size", "many"],
                                        [r"data.batch_size must be a positive integer \(got many\)",
                                         "set data.batch_size to 1 or more"], **early)
    c["misspelt_option"] = Case(cls, ["--data.init_args.bach_size", "8"],
                                [r"data.init_args.bach_size: Option 'bach_size' is not accepted; see", "--help"],
                                **early)
    c["option_of_another_task"] = Case(cls, ["--data.init_args.packing", "true"],
                                       [r"data.init_args.packing: Option 'packing' is not accepted by this data module "
                                        r"\(it is an option of SFTData \(task sft\)\); see `lit_ft fit --help`"],
                                       **early)
    c["unknown_argument"] = Case(cls, ["--trainer.max_epochz", "3"],
                                 [r"(?i)unrecognized arguments: --trainer.max_epochz"], **early)
    c["problem_type_typo"] = Case(cls, ["--data.init_args.problem_type", "multilabel"],
                                  [r"data.init_args.problem_type: Expected .*'multi_label'.*Got value: multilabel"],
                                  **early)
    c["source_format_unknown"] = Case(cls, ["--data.init_args.source.format", "xml"],
                                      [r"data.init_args.source.format: Expected .*'parquet'.*Got value: xml"], **early)
    c["max_length_zero"] = Case(cls, ["--data.init_args.max_length", "0"], [r"data.max_length must be a positive"],
                                **early)
    c["max_length_beyond_positions"] = Case(
        cls, ["--data.init_args.max_length", "1024"],
        [r"data.max_length is 1024, but backbone '.*' has 128 positions", "set data.max_length to 128 or less"],
        **early)
    c["validation_fraction_out_of_range"] = Case(cls, ["--data.init_args.source.validation_fraction", "1.5"],
                                                 [r"data.source.validation_fraction must be between 0 and 1"], **early)
    c["num_workers_negative"] = Case(cls, ["--data.init_args.num_workers", "-1"], [r"data.num_workers .*-1"], **early)
    c["unknown_task"] = Case(cls, ["--model.task", "sentiment"],
                             [r"unknown task 'sentiment' \(model.task\)", r"registered tasks are \[.*'classification'",
                              "--plugins"], **early)
    c["task_and_data_disagree"] = Case(
        cls, ["--model.task", "seq2seq"],
        [r"model.task is 'seq2seq' but data.class_path ClassificationData reads data for task 'classification'",
         "set data.class_path to lit_ft.tasks.seq2seq.Seq2SeqData"], **early)
    c["unknown_data_class"] = Case(cls, ["--data.class_path", "lit_ft.tasks.NoSuchData"],
                                   [r"data: 'lit_ft.tasks.NoSuchData'.*NoSuchData"], **early)
    c["output_dir_under_a_file"] = Case(
        cls, ["--trainer.default_root_dir", "{d}/train.csv/run"],
        [r"trainer.default_root_dir '.*train.csv/run' cannot be created: '.*train.csv' is a file",
         "choose another directory"], **early)
    c["checkpoint_dir_under_a_file"] = Case(
        cls, ["--checkpoint.dirpath", "{d}/train.csv/ckpts"], [r"checkpoint.dirpath '.*' cannot be created"], **early)
    c["predict_output_under_a_file"] = Case(
        cls, ["--trainer.default_root_dir", "{d}/train.csv/run", "--data.init_args.label_names", "[a,b]"],
        [r"trainer.default_root_dir '.*' cannot be created"], command="predict", **early)
    c["predict_without_predict_split"] = Case(
        cls, ["--data.init_args.label_names", "[negative,positive]"],
        [r"`predict` needs a predict split, but data.source.predict is not set"], train=None, command="predict")
    c["test_without_test_split"] = Case(cls, ["--data.init_args.label_names", "[negative,positive]"],
                                        [r"`test` needs a test split"], train=None, command="test")
    c["ckpt_path_missing"] = Case(cls, ["--ckpt_path", "{d}/nope.ckpt"],
                                  [r"--ckpt_path '.*nope.ckpt' does not exist", "`best` or `last`"],
                                  command="test", **early)
    c["ckpt_best_without_a_run"] = Case(cls, ["--ckpt_path", "best"], [r"no checkpoint found at '.*checkpoints'",
                                                                        "lit_ft fit"], command="test", **early)
    c["corrupt_checkpoint"] = Case(cls, ["--ckpt_path", "{d}/garbage.ckpt"],
                                   [r"--ckpt_path '.*garbage.ckpt' is not a readable lit_ft checkpoint",
                                    "written by `lit_ft fit`"],
                                   {"garbage.ckpt": b"\x80\x04not a checkpoint at all" * 10}, command="test",
                                   early=True)
    c["empty_checkpoint"] = Case(cls, ["--ckpt_path", "{d}/empty.ckpt"], [r"'.*empty.ckpt' is not a readable"],
                                 {"empty.ckpt": b""}, command="test", early=True)
    # ---- config files and plugins ----------------------------------------------------------------
    c["yaml_syntax_error"] = Case(cls, ["--config", "{d}/bad.yaml"],
                                  [r"'?.*bad.yaml:3:\d+: YAML syntax error", "fix that line"],
                                  {"bad.yaml": "model:\n  task: classification\n  backbone: [unclosed\n"}, early=True)
    c["yaml_tab_indent"] = Case(cls, ["--config", "{d}/tabs.yaml"], [r"tabs.yaml:2:\d+: YAML syntax error"],
                                {"tabs.yaml": "model:\n\ttask: classification\n"}, early=True)
    c["config_file_missing"] = Case(cls, ["--config", "{d}/nope.yaml"],
                                    [r"config file '.*nope.yaml' does not exist", "--config"], early=True)
    c["plugin_file_missing"] = Case(cls, ["--plugins", "{d}/my_task.py"],
                                    [r"plugin module '.*my_task.py' not found"], early=True)
    c["plugin_registers_nothing"] = Case(
        cls, ["--plugins", "{d}/empty_plugin.py"],
        [r"plugin module '.*empty_plugin.py' registers no task", "define a `lit_ft.task.Task` subclass with a `name`"],
        {"empty_plugin.py": "from lit_ft.task import Task\n\nclass Helper:\n    pass\n"}, early=True)
    c["plugin_syntax_error"] = Case(cls, ["--plugins", "{d}/broken_plugin.py"],
                                    [r"broken_plugin.py:2: syntax error in plugin module"],
                                    {"broken_plugin.py": "import os\ndef oops(:\n"}, early=True)
    c["plugin_module_not_importable"] = Case(cls, ["--plugins", "no_such_plugin_module"],
                                             [r"plugin module 'no_such_plugin_module' not found; give a .py file"],
                                             early=True)
    c["unknown_verb"] = Case(cls, ["frob"], [r"unknown command 'frob'; the commands are fit, validate",
                                             "lit_ft --help"], early=True, base=False)
    c["export_missing_checkpoint"] = Case(cls, ["export", "{d}/nope.ckpt", "--output_dir", "{root}"],
                                          [r"no checkpoint found at '.*nope.ckpt'"], early=True, base=False)
    # ---- token classification --------------------------------------------------------------------
    tok = "token_classification"
    c["conll_missing_tag_column"] = Case(tok, ["--data.init_args.conll_tag_index", "3"],
                                         [r"'.*train.conll' line 1 has 2 columns, so data.conll_tag_index=3 names no "
                                          "tag column", "set data.conll_tag_index"],
                                         {"train.conll": GOOD_CONLL}, train="train.conll")
    c["conll_line_short_of_the_tag_column"] = Case(
        tok, [], [r"train.conll:3: line 'Paris' has 1 columns", "set data.conll_token_index / data.conll_tag_index"],
        {"train.conll": "John B-PER\nvisited O\nParis\n"}, train="train.conll")
    c["conll_empty_file"] = Case(tok, [], [r"data.source.train: '.*train.conll' is empty"], {"train.conll": "\n\n"},
                                 train="train.conll")
    c["conll_missing_file"] = Case(tok, [], [r"'.*train.conll' does not exist"], train="train.conll")
    c["tokens_and_tags_differ"] = Case(tok, [], [r"row '0' in file '.*train.jsonl' has 3 tokens but 2 tags"],
                                       {"train.jsonl": jsonl({"tokens": ["a", "b", "c"], "tags": ["O", "B-PER"]})},
                                       train="train.jsonl")
    c["tag_not_in_scheme"] = Case(tok, [], [r"tag 'X-PER' of row .* is not a IOB2 tag", "set data.tag_scheme"],
                                  {"train.jsonl": jsonl({"tokens": ["john"], "tags": ["X-PER"]})},
                                  train="train.jsonl")
    c["token_column_missing"] = Case(tok, [], [r"token_column 'tokens' not found", "set data.token_column"],
                                     {"train.jsonl": jsonl({"words": ["john"], "tags": ["B-PER"]})},
                                     train="train.jsonl")
    c["tag_ids_without_names"] = Case(tok, [], [r"tags of file '.*train.jsonl' \(column 'tags'\) are ids",
                                                "set data.label_names"],
                                      {"train.jsonl": jsonl({"tokens": ["john"], "tags": [1]})}, train="train.jsonl")
    c["label_names_without_O"] = Case(tok, ["--data.init_args.label_names", "[B-PER,I-PER]"],
                                      [r"have no 'O' tag", "add 'O' to data.label_names"],
                                      {"train.conll": GOOD_CONLL}, train="train.conll")
    c["plain_tags_with_entity_target"] = Case(tok, ["--data.init_args.tag_scheme", "none",
                                                    "--data.init_args.target_scheme", "IOB2"],
                                              [r"data.tag_scheme is 'none'", "set data.target_scheme to none"],
                                              {"train.conll": GOOD_CONLL}, train="train.conll", early=True)
    # ---- question answering ----------------------------------------------------------------------
    qa = "question_answering"
    c["answer_not_in_context"] = Case(qa, [], [r"answer 'berlin' of row 0 \(id 'q0'\) .* is not in its context"],
                                      {"train.jsonl": jsonl({**SQUAD_ROW, "answers": {"text": ["berlin"],
                                                                                      "answer_start": [0]}})},
                                      train="train.jsonl")
    c["question_column_missing"] = Case(qa, ["--data.init_args.question_column", "query"],
                                        [r"question_column 'query' not found", "set data.question_column"],
                                        {"train.jsonl": jsonl(SQUAD_ROW)}, train="train.jsonl")
    c["stride_not_below_max_length"] = Case(qa, ["--data.init_args.stride", "64"],
                                            [r"data.stride \(64\) must be .* below data.max_length \(48\)"],
                                            {"train.jsonl": jsonl(SQUAD_ROW)}, train="train.jsonl", early=True)
    c["empty_context"] = Case(qa, [], [r"row 0 \(id 'q0'\) of file '.*train.jsonl' has an empty context_column "
                                       "'context'"],
                              {"train.jsonl": jsonl({**SQUAD_ROW, "context": " "})}, train="train.jsonl")
    c["truncated_squad_json"] = Case(qa, [], [r"'.*train.json': invalid JSON at line 2"],
                                     {"train.json": '{"version": "1.1",\n "data": [{"title": "x", "paragraphs": ['},
                                     train="train.json")
    # ---- sequence to sequence --------------------------------------------------------------------
    s2s = "seq2seq"
    c["one_language_only"] = Case(s2s, ["--data.init_args.source_lang", "en"],
                                  [r"set both data.source_lang and data.target_lang \(got 'en', None\)"],
                                  {"train.jsonl": jsonl(SUMMARY_ROW)}, train="train.jsonl", early=True)
    c["target_column_missing"] = Case(s2s, ["--data.init_args.target_column", "summary"],
                                      [r"target_column 'summary' not found in file '.*train.jsonl'",
                                       "set data.target_column"], {"train.jsonl": jsonl(SUMMARY_ROW)},
                                      train="train.jsonl")
    c["empty_source_text"] = Case(s2s, [], [r"row '1' of file '.*train.jsonl' has an empty source_column 'source'"],
                                  {"train.jsonl": jsonl(SUMMARY_ROW, {**SUMMARY_ROW, "source": ""})},
                                  train="train.jsonl")
    c["parallel_files_differ_in_length"] = Case(
        s2s, ["--data.init_args.source_lang", "en", "--data.init_args.target_lang", "de"],
        [r"data.source.train: parallel files must have the same number of lines"],
        {"train.en": "a cat\nthe mat\n", "train.de": "eine katze\n"}, train="train")
    c["parallel_stem_missing"] = Case(
        s2s, ["--data.init_args.source_lang", "en", "--data.init_args.target_lang", "de"],
        [r"'.*corpus' is neither a data file .* nor the stem of parallel text files", "data.source_lang"],
        train="corpus")
    c["max_target_length_zero"] = Case(s2s, ["--data.init_args.max_target_length", "0"],
                                       [r"data.max_target_length must be a positive integer"],
                                       {"train.jsonl": jsonl(SUMMARY_ROW)}, train="train.jsonl", early=True)
    c["text_file_for_question_answering"] = Case(
        qa, ["--data.init_args.source.format", "text"],
        [r"read as plain text \(one example per line\), which task 'question_answering' cannot use"],
        {"train.txt": "where is paris\n"}, train="train.txt")
    # ---- supervised fine-tuning ------------------------------------------------------------------
    sft = "sft"
    c["sft_shape_unknown"] = Case(sft, [], [r"cannot tell the data shape from the columns \['answer', 'question'\]",
                                            "set data.format"],
                                  {"train.jsonl": jsonl({"question": "hi", "answer": "hello"})}, train="train.jsonl")
    c["sft_template_names_missing_column"] = Case(
        sft, ["--data.init_args.prompt_template", "{instruction}: {context}"],
        [r"data.prompt_template names column 'instruction' which the data lacks"], {"train.jsonl": jsonl(PC_ROW)},
        train="train.jsonl")
    c["sft_response_cut_away"] = Case(sft, ["--data.init_args.max_length", "3"],
                                      [r"row '0' in the train split \(file '.*train.jsonl'\) has no response token "
                                       "to train on",
                                       "data.drop_untrainable"],
                                      {"train.jsonl": jsonl({"prompt": "say cat twice please now:",
                                                             "completion": " cat cat"})}, train="train.jsonl")
    c["sft_chat_column_missing"] = Case(sft, ["--data.init_args.format", "chat"],
                                        [r"messages_column 'messages' not found", "set data.messages_column"],
                                        {"train.jsonl": jsonl(PC_ROW)}, train="train.jsonl")
    c["sft_message_without_role"] = Case(
        sft, [], [r"row '0' in the train split \(file '.*train.jsonl'\): message 0 of column 'messages' needs a text "
                  "'role' and 'content'",
                  r"it has \['content'\]"],
        {"train.jsonl": jsonl({"messages": [{"content": "hi"}, {"role": "assistant", "content": "hello"}]})},
        train="train.jsonl")
    c["sft_messages_not_a_list"] = Case(
        sft, [], [r"column 'messages' must hold a list of \{role, content\} messages, not str"],
        {"train.jsonl": jsonl({"messages": "hello there"})}, train="train.jsonl")
    c["sft_missing_completion"] = Case(
        sft, [], [r"row '1' in the train split \(file '.*train.jsonl'\) has no completion_column 'completion' value",
                  "data.source.predict"],
        {"train.jsonl": jsonl(PC_ROW, {"prompt": "say mat:", "completion": None})}, train="train.jsonl")
    c["sft_unsafe_sandbox_without_opt_in"] = Case(
        sft, ["--model.task_options.metrics", "[pass@1]", "--model.task_options.code_sandbox", "unsafe_user"],
        [r"code sandbox mode unsafe_user does not isolate generated code",
         r"set model\.task_options\.allow_unsafe_sandbox true to run it anyway"],
        {"train.jsonl": jsonl(PC_ROW)}, train="train.jsonl")
    # task data: round two ------------------------------------------------------------------------
    c["conll_token_with_a_space"] = Case(
        tok, [], [r"train.conll:2: line 'New York B-LOC' has 3 space-separated columns where the file's lines have 2",
                  "separate the columns with tabs"],
        {"train.conll": "John B-PER\nNew York B-LOC\nvisited O\n\nthe O\ncat O\n"}, train="train.conll")
    c["conll_predict_token_with_a_space"] = Case(
        tok, ["--data.init_args.label_names", "[O,B-LOC,I-LOC]", "--data.init_args.source.predict", "{d}/p.conll"],
        [r"p.conll:1: line 'New York' has 2 space-separated columns where the file's lines have 1"],
        {"p.conll": "New York\nis\nbig\n"}, train=None, command="predict")
    unanswerable = {**SQUAD_ROW, "id": "q1", "answers": {"text": [], "answer_start": []}}
    c["squad_v2_rows_without_the_v2_flag"] = Case(
        qa, [], [r"1 of 2 rows of file '.*train.jsonl' have no answer \(SQuAD v2.0 style, first: row 'q1'\)",
                 "--model.task_options.version_2_with_negative true"],
        {"train.jsonl": jsonl(SQUAD_ROW, unanswerable)}, train="train.jsonl")
    c["squad_v2_json_without_the_v2_flag"] = Case(
        qa, [], [r"1 of 2 rows of file '.*train.json' have no answer", "version_2_with_negative"],
        {"train.json": json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
            "context": SQUAD_ROW["context"], "qas": [
                {"id": "a", "question": "where", "answers": [{"text": "paris", "answer_start": 13}]},
                {"id": "b", "question": "who", "answers": [], "is_impossible": True}]}]}]})}, train="train.json")
    shape = r'expected \{"text": \[...\], "answer_start": \[...\]\} or a list of \{"text", "answer_start"\}'
    c["answers_as_a_string"] = Case(
        qa, [], [r"row 'q0' of file '.*train.jsonl': column 'answers' holds 'paris' \(str\)", shape],
        {"train.jsonl": jsonl({**SQUAD_ROW, "answers": "paris"})}, train="train.jsonl")
    c["answers_as_a_list_of_strings"] = Case(
        qa, [], [r"row 'q0' of file '.*train.jsonl': column 'answers' holds \['paris'\]", shape],
        {"train.jsonl": jsonl({**SQUAD_ROW, "answers": ["paris"]})}, train="train.jsonl")
    c["answers_without_answer_start"] = Case(
        qa, [], [r"row 'q0' of file '.*train.jsonl': column 'answers' holds 1 answer texts but 0 answer_start", shape],
        {"train.jsonl": jsonl({**SQUAD_ROW, "answers": {"text": ["paris"]}})}, train="train.jsonl")
    c["squad_json_answers_as_strings"] = Case(
        qa, [], [r"row 'a' of file '.*train.json': key 'answers' holds \['paris'\]", shape],
        {"train.json": json.dumps({"data": [{"title": "t", "paragraphs": [{
            "context": SQUAD_ROW["context"], "qas": [{"id": "a", "question": "where", "answers": ["paris"]}]}]}]})},
        train="train.json")
    long_question = " ".join(["where did john go"] * 8)  # 40 tokens: 5 left for the context, not over 16
    c["question_longer_than_max_length_minus_stride"] = Case(
        qa, [], [r"row 'q0' of file '.*train.jsonl': the question is 40 tokens", r"data.max_length \(48\)",
                 r"data.stride \(16\)", "raise data.max_length, lower data.stride, or drop"],
        {"train.jsonl": jsonl({**SQUAD_ROW, "question": long_question, "context": SQUAD_ROW["context"] * 4})},
        train="train.jsonl")
    c["alpaca_empty_output"] = Case(
        sft, [], [r"row '1' in the train split \(file '.*train.jsonl'\): the response \(output_column 'output'\) "
                  "is empty", "data.drop_untrainable"],
        {"train.jsonl": jsonl({"instruction": "say cat", "input": "", "output": "cat"},
                              {"instruction": "say mat", "input": "", "output": ""})}, train="train.jsonl")
    c["sft_empty_completion"] = Case(
        sft, [], [r"row '0' in the train split .*: the response \(completion_column 'completion'\) is empty"],
        {"train.jsonl": jsonl({"prompt": "say mat:", "completion": "  "}, PC_ROW)}, train="train.jsonl")
    c["chat_empty_assistant_turn"] = Case(
        sft, [], [r"row '0' in the train split .*: the response \(message 1 of column 'messages'\) is empty"],
        {"train.jsonl": jsonl({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]})},
        train="train.jsonl")
    c["chat_assistant_first"] = Case(
        sft, [], [r"row '0' in the train split .*: message 0 of column 'messages' is the assistant's",
                  "start the conversation with a user turn"],
        {"train.jsonl": jsonl({"messages": [{"role": "assistant", "content": "hello"},
                                            {"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "how are you"}]})}, train="train.jsonl")
    c["chat_unknown_role"] = Case(
        sft, [], [r"row '0' in the train split .*: message 0 of column 'messages' has role 'human'",
                  "'user'"],
        {"train.jsonl": jsonl({"messages": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "yo"}]})},
        train="train.jsonl")
    c["chat_template_refuses_the_conversation"] = Case(
        sft, ["--data.init_args.chat_template",
              "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
              "{% for m in messages %}{{ m['content'] }}{% endfor %}"],
        [r"row '0' in the train split .*: the chat template refuses the conversation \(no system role\)",
         "set data.chat_template"],
        {"train.jsonl": jsonl({"messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "hello"}]})}, train="train.jsonl")
    c["seq2seq_empty_target"] = Case(
        s2s, [], [r"row '1' of file '.*train.jsonl' has an empty target_column 'target'", "fill it or drop the row"],
        {"train.jsonl": jsonl(SUMMARY_ROW, {**SUMMARY_ROW, "target": ""})}, train="train.jsonl")
    c["parallel_text_empty_target_line"] = Case(
        s2s, ["--data.init_args.source_lang", "en", "--data.init_args.target_lang", "de"],
        [r"row '1' of .*: column 'translation' has an empty 'de' text", "fill it or drop the row"],
        {"train.en": "a cat\nthe mat\n", "train.de": "eine katze\n\n"}, train="train")
    # typed limits and labels -------------------------------------------------------------------
    def domain(key: str, value: str, words: str) -> list[str]:
        key = re.escape(key)
        return [rf"{key} must be {re.escape(words)} \(got {re.escape(value)}\)", rf"; set {key} to"]

    c["learning_rate_negative"] = Case(cls, ["--model.learning_rate", "-1e-3"],
                                       domain("model.learning_rate", "-1e-3", "a number above 0"), **early)
    c["learning_rate_negative_joined"] = Case(cls, ["--model.learning_rate=-0.001"],
                                              domain("model.learning_rate", "-0.001", "a number above 0"), **early)
    c["learning_rate_zero_in_config"] = Case(cls, ["--config", "{d}/lr.yaml"],
                                             domain("model.learning_rate", "0", "a number above 0"),
                                             {**early["files"], "lr.yaml": "model:\n  learning_rate: 0\n"}, early=True)
    c["weight_decay_negative"] = Case(cls, ["--model.weight_decay", "-0.01"],
                                      domain("model.weight_decay", "-0.01", "a number of 0 or more"), **early)
    c["warmup_negative"] = Case(cls, ["--model.warmup", "-1"], domain("model.warmup", "-1", "a number of 0 or more"),
                                **early)
    c["freeze_layers_negative"] = Case(cls, ["--model.freeze_layers", "-2"],
                                       domain("model.freeze_layers", "-2", "an integer of 0 or more"), **early)
    c["lora_dropout_one"] = Case(cls, ["--model.lora.dropout", "1.0"],
                                 domain("model.lora.dropout", "1.0", "between 0 and 1 (0 included, 1 excluded)"),
                                 **early)
    c["optimizer_lr_negative"] = Case(cls, ["--model.optimizer.init_args.lr", "-1"],
                                      domain("model.optimizer.lr", "-1", "a number above 0"), **early)
    c["threshold_above_one"] = Case(cls, ["--model.task_options", "{threshold: 1.5}"],
                                    domain("model.task_options.threshold", "1.5", "between 0 and 1 (both included)"),
                                    **early)
    c["task_option_misspelt"] = Case(cls, ["--model.task_options.treshold", "0.3"],
                                     [r"model\.task_options\.treshold is not an option of task 'classification' "
                                      r"\(its options: monitor, threshold\); did you mean 'threshold'\?",
                                      r"`lit_ft tasks --options classification`"], **early)
    c["task_option_wrong_type"] = Case(cls, ["--model.task_options.threshold", "high"],
                                       [r"model\.task_options\.threshold is 'high' \(str\) but task 'classification' "
                                        r"takes float ≥0 and ≤1 there; set model\.task_options\.threshold to"],
                                       **early)
    c["sft_metrics_not_a_list"] = Case("sft", ["--model.task_options.metrics", "pass@1"],
                                       [r"model\.task_options\.metrics is 'pass@1' \(str\) but task 'sft' takes "
                                        r"list\[str\] or null there"],
                                       {"train.jsonl": jsonl(PC_ROW)}, train="train.jsonl", early=True)
    c["shuffle_seed_negative"] = Case(cls, ["--data.init_args.shuffle_seed", "-7"],
                                      domain("data.shuffle_seed", "-7", "an integer of 0 or more"), **early)
    c["save_top_k_below_minus_one"] = Case(cls, ["--checkpoint.save_top_k", "-2"],
                                           domain("checkpoint.save_top_k", "-2", "-1 (all) or a count of 0 or more"),
                                           **early)
    c["nan_guard_skip_steps_negative"] = Case(cls, ["--nan_guard.skip_steps", "-1"],
                                              domain("nan_guard.skip_steps", "-1", "an integer of 0 or more"), **early)
    c["early_stopping_patience_negative"] = Case(
        cls, ["--trainer.callbacks+=lit_ft.training.checkpoint.TaskEarlyStopping",
              "--trainer.callbacks.patience", "-1"],
        domain("trainer.callbacks.patience", "-1", "an integer of 0 or more"), **early)
    c["qa_stride_negative"] = Case(qa, ["--data.init_args.stride", "-16"],
                                   domain("data.stride", "-16", "an integer of 0 or more"),
                                   {"train.jsonl": jsonl(SQUAD_ROW)}, train="train.jsonl", early=True)
    c["max_new_tokens_zero"] = Case(s2s, ["--model.task_options", "{max_new_tokens: 0}"],
                                    domain("model.task_options.max_new_tokens", "0", "a positive integer"),
                                    {"train.jsonl": jsonl(SUMMARY_ROW)}, train="train.jsonl", early=True)
    c["seed_negative"] = Case(cls, ["--seed_everything", "-5"],
                              [r"seed_everything must be an integer from 0 to 4294967295 \(got -5\)"], **early)
    c["tune_seed_negative"] = Case(cls, ["tune", "--config", "configs/quickstart.yaml", "--search", "{d}/space.yaml",
                                         "--trials", "1", "--seed", "-1"],
                                   [r"--seed must be an integer from 0 to 4294967295 \(got -1\)"], early=True,
                                   base=False)
    c["neftune_noise_alpha_zero"] = Case(cls, ["--model.neftune_noise_alpha", "0"],
                                         domain("model.neftune_noise_alpha", "0", "a number above 0"), **early)
    c["attn_implementation_unknown"] = Case(cls, ["--model.attn_implementation", "flash"],
                                            [r"model.attn_implementation", "'sdpa', 'eager', 'flash_attention_2'"],
                                            **early)
    # on this CPU machine: no CUDA device; on a GPU machine without the package: the package
    c["flash_attention_where_it_cannot_run"] = Case(cls, ["--model.attn_implementation", "flash_attention_2"],
                                                    [r"model.attn_implementation flash_attention_2 needs",
                                                     "or set model.attn_implementation sdpa"], **early)
    c["max_epochs_zero"] = Case(cls, ["--trainer.max_epochs", "0"],
                                [r"trainer.max_epochs is 0: fit would stop before the first step and export an "
                                 "untrained model", "set trainer.max_epochs to 1 or more"], **early)
    c["max_steps_zero"] = Case(cls, ["--trainer.max_steps", "0"], [r"trainer.max_steps is 0", "1 or more"], **early)
    c["max_epochs_below_minus_one"] = Case(cls, ["--trainer.max_epochs", "-3"],
                                           [r"trainer.max_epochs is -3; set trainer.max_epochs to 1 or more, or -1"],
                                           **early)
    c["accumulate_grad_batches_zero"] = Case(cls, ["--trainer.accumulate_grad_batches", "0"],
                                             [r"trainer.accumulate_grad_batches is 0", "1 or more"], **early)
    c["val_check_interval_zero"] = Case(cls, ["--trainer.val_check_interval", "0.0"],
                                        [r"trainer.val_check_interval is 0.0", "set it above 0"], **early)
    c["gradient_clip_val_negative"] = Case(cls, ["--trainer.gradient_clip_val", "-1"],
                                           [r"trainer.gradient_clip_val is -1(\.0)?", "0 or more"], **early)
    c["limit_val_batches_negative"] = Case(cls, ["--trainer.limit_val_batches", "-2"],
                                           [r"trainer.limit_val_batches is -2", "0 or more"], **early)
    c["labels_differ_by_case_and_space"] = Case(
        cls, [], [r"labels of file '.*train.csv' \(column 'label'\) differ only by case or surrounding spaces "
                  r"\('Positive', 'positive', 'positive '\)", r"data.label_map .*\{Positive: positive, "
                  r"'positive ': positive\}", "data.label_names"],
        {"train.csv": "text,label\ngood,positive\nfine,positive \ngreat,Positive\nbad,negative\n"})
    c["labels_mix_numbers_and_names"] = Case(
        cls, [], [r"labels of file '.*train.csv' \(column 'label'\) mix numbers \('1'\) and names "
                  r"\('negative', 'positive'\)",
                  r"data.label_map .*\{1: <class name>\}"],
        {"train.csv": "text,label\ngood,1\nfine,positive\nbad,negative\n"})
    c["multi_label_names_differ_by_case"] = Case(
        cls, ["--data.init_args.problem_type", "multi_label"],
        [r"differ only by case or surrounding spaces \('Drama', 'drama'\)", "data.label_map"],
        {"train.csv": 'text,label\ngood,action\nfun,"action,drama"\nsad,Drama\n'})
    c["train_split_of_one_class"] = Case(
        cls, [], [r"the training split has 1 class\(es\) \['positive'\]: classification needs two or more"],
        {"train.csv": "text,label\ngood,positive\nfine,positive\n"})
    c["train_split_of_one_listed_class"] = Case(
        cls, ["--data.init_args.label_names", "[negative,positive]"],
        [r"every label of the training split is 'positive' \(2 in all\)", "add training rows of the other labels"],
        {"train.csv": "text,label\ngood,positive\nfine,positive\n"})
    c["tags_differ_by_case"] = Case(
        tok, [], [r"labels of file '.*train.jsonl' \(column 'tags'\) differ only by case .*\('B-PER', 'b-per'\)",
                  "spell each tag one way"],
        {"train.jsonl": jsonl({"tokens": ["john", "met", "anna"], "tags": ["B-PER", "O", "b-per"]})},
        train="train.jsonl")
    # ---- what is not on this machine (the tests run with HF_HUB_OFFLINE=1, tests/conftest.py) ---------
    lookup = r"not a local directory, not in the Hugging Face cache \(.*\), and the hub cannot be asked \("
    c["backbone_hub_id_mistyped"] = Case(cls, ["--model.backbone", "sentence-transformers/all-MiniLM-L6-v3"],
                                         [rf"model.backbone 'sentence-transformers/all-MiniLM-L6-v3' is {lookup}",
                                          "--model.backbone DIR", "run once online", "spelling"], **early)
    c["backbone_directory_missing"] = Case(cls, ["--model.backbone", "{d}/no_such_model"],
                                           [r"model.backbone '.*/no_such_model': no such directory",
                                            "--model.backbone DIR, a model directory with config.json"], **early)
    c["backbone_directory_not_a_model"] = Case(cls, ["--model.backbone", "{d}"],
                                               [r"model.backbone '.*' is a directory without config.json",
                                                "save_pretrained"], **early)
    c["generative_recipe_default_backbone_offline"] = Case(
        "sft", ["fit", "--config", "configs/sft_customer_support.yaml", "--trainer.default_root_dir", "{root}"],
        [rf"model.backbone 'Qwen/Qwen2.5-0.5B-Instruct' is {lookup}HF_HUB_OFFLINE=1\)", "--model.backbone DIR"],
        early=True, base=False)
    c["hub_data_offline_names_the_offline_piece"] = Case(
        cls, ["fit", "--config", "configs/sentiment_sst2.yaml", "--trainer.default_root_dir", "{root}"],
        [r"data.init_args.source.hub 'stanfordnlp/sst2' is not in the datasets cache and the hub cannot be asked",
         r"add the recipe's offline data piece: --config configs/offline/sentiment_sst2.yaml"],
        early=True, base=False)
    c["inspect_data_hub_data_offline"] = Case(
        cls, ["inspect-data", "--config", "configs/topic_ag_news.yaml"],
        [r"data.init_args.source.hub 'fancyzhx/ag_news' is not in the datasets cache",
         r"--config configs/offline/topic_ag_news.yaml"], early=True, base=False)
    c["hub_data_offline_recipe_without_piece"] = Case(
        "sft", ["fit", "--config", "configs/sft_alpaca.yaml", "--data.init_args.source.hub", "tatsu-lab/alpaca",
                "--model.backbone", "sentence-transformers/all-MiniLM-L6-v2", "--trainer.default_root_dir", "{root}"],
        [r"data.init_args.source.hub 'tatsu-lab/alpaca' is not in the datasets cache",
         r"sft_alpaca.yaml ships no offline piece .*: point data.init_args.source.train/validation/test/predict at "
         "local files and set data.init_args.source.hub null"], early=True, base=False)
    _preference_cases(c)
    return c


def _preference_cases(c: dict[str, Case]) -> None:
    """Bad preference pairs: each one line naming the file, the row and the fix."""
    dpo, user, bot = "dpo", {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
    c["pair_chosen_equals_rejected"] = Case(
        dpo, [], [r"row '1' in the train split \(file '.*train.jsonl'\): 'chosen' equals 'rejected'", "fix the row"],
        {"train.jsonl": jsonl(PAIR_ROW, {**PAIR_ROW, "rejected": " cat"})}, train="train.jsonl")
    c["pair_empty_completion"] = Case(
        dpo, [], [r"row '0' in the train split \(file '.*train.jsonl'\): rejected_column 'rejected' is empty",
                  "fill it or drop the row"],
        {"train.jsonl": jsonl({**PAIR_ROW, "rejected": " "})}, train="train.jsonl")
    c["pair_missing_rejected_value"] = Case(
        dpo, [], [r"row '1' in the train split \(file '.*train.jsonl'\) has no rejected_column 'rejected' value"],
        {"train.jsonl": jsonl(PAIR_ROW, {"prompt": "say mat:", "chosen": " mat"})}, train="train.jsonl")
    c["pair_columns_missing"] = Case(
        "reward_model", [], [r"cannot tell the preference data shape .* columns \['completion', 'prompt'\]",
                             "set data.chosen_column"],
        {"train.jsonl": jsonl(PC_ROW)}, train="train.jsonl")
    c["pair_conversation_ends_with_user"] = Case(
        dpo, [], [r"row '0' in the train split .*: the last turn of chosen_column 'chosen' is the user's, not the "
                  "assistant's", "end the conversation with the assistant turn"],
        {"train.jsonl": jsonl({"chosen": [user, bot, user], "rejected": [user, bot, user, bot]})},
        train="train.jsonl")
    c["pair_margin_not_a_number"] = Case(
        "reward_model", ["--data.init_args.margin_column", "score"],
        [r"row '0' in the train split .*: margin_column 'score' holds 'high', not a number"],
        {"train.jsonl": jsonl({**PAIR_ROW, "score": "high"})}, train="train.jsonl")
    c["pair_data_for_another_task"] = Case(  # one data module shared by two tasks, neither of them sft
        "sft", ["--data.class_path", DATA_CLASS[dpo]],
        [r"model.task is 'sft' but data.class_path PreferenceData reads data for task 'dpo' or 'reward_model'"],
        {"train.jsonl": jsonl(PAIR_ROW)}, train="train.jsonl", early=True)


CASES = _cases()


@pytest.fixture(scope="module")
def backbones(tiny_bert: Path, llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from test_seq2seq import make_tiny_t5

    t5 = make_tiny_t5(tmp_path_factory.mktemp("t5"), ["the", "cat", "sat", "on", "mat", "a"])
    return {"classification": tiny_bert, "token_classification": tiny_bert, "question_answering": tiny_bert,
            "seq2seq": t5, "sft": llama, "dpo": llama, "reward_model": tiny_bert}


@pytest.fixture(scope="module", autouse=True)
def quiet_progress() -> Iterator[None]:
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def base_args(case: Case, backbone: Path, d: Path, root: Path) -> list[str]:
    args = [case.command, "--model.task", case.task, "--model.backbone", str(backbone),
            "--data.class_path", DATA_CLASS[case.task], "--trainer.default_root_dir", str(root),
            "--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.max_steps", "2", *QUIET]
    for split in ("train", "validation"):  # validation reads the train file: no held-out split to carve
        args += [f"--data.init_args.source.{split}", str(d / case.train) if case.train else "null"]
    if case.task == "question_answering":
        args += ["--data.init_args.max_length", "48", "--data.init_args.stride", "16"]
    return args


def fill(arg: str, d: Path, root: Path) -> str:
    return arg.replace("{d}", str(d)).replace("{root}", str(root))


def run_case(case: Case, backbone: Path, d: Path, root: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    extra = [fill(a, d, root) for a in case.args]
    argv = [*base_args(case, backbone, d, root), *extra] if case.base else extra
    capfd.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return int(exited.value.code or 0), capfd.readouterr().err


def assert_one_actionable_line(err: str, expect: list[str]) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in lines if re.search(r"(?i)\berror\b|exception", line)]
    assert len(errors) == 1 and lines[-1] == errors[0], f"want one error line, last; got:\n{err[-3000:]}"
    line = errors[0]
    assert line.startswith("lit_ft: error: "), line
    for pattern in expect:
        assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
    return line


def assert_nothing_half_written(root: Path, early: bool) -> None:
    if early:
        assert not root.exists(), f"{root} was created by a run that should have stopped before starting"
        return
    for name in ("checkpoints", "export"):
        assert not (root / name).exists() or not any((root / name).iterdir()), f"{name} left in {root}"
    leftovers = [p.name for p in root.glob("*") if p.name.startswith(("predictions", ".export", "export"))]
    assert not leftovers, leftovers


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, backbones: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    root = tmp_path / "run"
    code, err = run_case(case, backbones[case.task], tmp_path / "data", root, capfd)
    assert code == 2, err[-3000:]
    assert_one_actionable_line(err, case.expect)
    assert_nothing_half_written(root, case.early)


def test_catalogue_covers_every_task_and_has_at_least_50_cases() -> None:
    tasks = {case.task for case in CASES.values()}
    assert len(CASES) >= 50 and tasks == set(DATA_CLASS)


def test_debug_shows_the_traceback(backbones: dict[str, Path], tmp_path: Path) -> None:
    case = CASES["batch_size_zero"]
    argv = [*base_args(case, backbones["classification"], tmp_path, tmp_path / "run"), *case.args, "--debug"]
    with pytest.raises(ValueError, match="data.batch_size must be a positive integer"):
        main(argv)


# ---- a trained checkpoint of another task -------------------------------------------------------
@pytest.fixture(scope="module")
def classification_checkpoint(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cls_run")
    (d / "train.csv").write_text(GOOD_CSV)
    root = d / "run"
    case = Case("classification", [], [])
    done = cli(*base_args(case, tiny_bert, d, root), "--trainer.max_steps", "1", "--export.enabled", "false")
    path = Path(done.trainer.checkpoint_callback.best_model_path or done.trainer.checkpoint_callback.last_model_path)
    assert path.is_file()
    return path


@pytest.mark.parametrize("task", ["token_classification", "seq2seq"])
def test_checkpoint_of_another_task(task: str, classification_checkpoint: Path, backbones: dict[str, Path],
                                    tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    case = Case(task, ["--ckpt_path", str(classification_checkpoint)],
                [rf"--ckpt_path '.*\.ckpt' holds a 'classification' model, but model.task is '{task}'",
                 f"give a checkpoint trained for '{task}'"],
                {"train.jsonl": jsonl({"tokens": ["a"], "tags": ["O"]}, SUMMARY_ROW)}, train="train.jsonl",
                command="test", early=True)
    code, err = run_case(case, backbones[task], tmp_path / "data", tmp_path / "run", capfd)
    assert code == 2
    assert_one_actionable_line(err, case.expect)
    assert_nothing_half_written(tmp_path / "run", early=True)


# ---- as a real subprocess -----------------------------------------------------------------------
def test_bad_inputs_in_real_subprocesses(backbones: dict[str, Path], tmp_path: Path) -> None:
    """`python -m lit_ft` itself: exit status 2 and the one line, for a config error and a data error (run at once)."""
    running = {}
    for name in ("yaml_syntax_error", "bad_quote"):
        case = CASES[name]
        d, root = tmp_path / name / "data", tmp_path / name / "run"
        d.mkdir(parents=True)
        for file, content in case.files.items():
            (d / file).write_bytes(content) if isinstance(content, bytes) else (d / file).write_text(content)
        argv = [*base_args(case, backbones[case.task], d, root), *[fill(a, d, root) for a in case.args]]
        running[name] = (root, subprocess.Popen([sys.executable, "-m", "lit_ft", *argv], stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True))
    for name, (root, process) in running.items():
        _, err = process.communicate(timeout=300)
        assert process.returncode == 2, err[-3000:]
        assert_one_actionable_line(err, CASES[name].expect)
        assert_nothing_half_written(root, CASES[name].early)


# ---- offline, every shipped recipe whose default backbone is not packaged -------------------------
def _hub_backbone_recipes() -> list[Path]:
    from stand_ins import ROOT, read_recipe

    from lit_ft.backbone import PACKAGED_MODELS

    return [r for r in sorted((ROOT / "configs").glob("*.yaml"))
            if read_recipe(r)["model"]["backbone"] not in PACKAGED_MODELS]


@pytest.mark.parametrize("recipe", _hub_backbone_recipes(), ids=lambda r: r.stem)
def test_a_recipes_default_backbone_offline_is_one_line(recipe: Path, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The generative recipes (and the classic BERT one) as shipped, offline: one line naming the backbone, where
    it was looked for and the fix, before any data or weights load."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    case = Case("sft", ["fit", "--config", str(recipe), "--trainer.default_root_dir", "{root}"],
                [r"model.backbone '[\w.-]+/[\w.-]+' is not a local directory, not in the Hugging Face cache",
                 r"\(HF_HUB_OFFLINE=1\); give a local model directory with --model.backbone DIR"], base=False)
    code, err = run_case(case, Path(), tmp_path / "data", tmp_path / "run", capfd)
    assert code == 2, err[-3000:]
    assert_one_actionable_line(err, case.expect)
    assert_nothing_half_written(tmp_path / "run", early=True)


# ---- online: the hub's own answer, from a stand-in hub on this machine -----------------------------
class _StandInHub(http.server.BaseHTTPRequestHandler):
    """Answers every file request as the Hugging Face Hub does for a missing and for a gated repository."""

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        gated = self.path.startswith("/gated-org/")
        self.send_response(403 if gated else 401)
        self.send_header("X-Error-Code", "GatedRepo" if gated else "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.slow  # two lit_ft processes (about 10 s of CPU)
def test_the_hubs_answer_is_one_line(backbones: dict[str, Path], tmp_path: Path) -> None:
    """With the hub reachable (HF_ENDPOINT pointing at a stand-in), a mistyped id and a gated model each end in
    one line with the hub's answer and the fix (real subprocesses: the hub client reads its endpoint at import)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandInHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
               HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=os.pathsep.join(sys.path))
    expect = {"no-org/no-model": [r"model.backbone 'no-org/no-model': the hub has no such model \(or it is private\)",
                                  "check the hub id", "--model.backbone DIR"],
              "gated-org/model": [r"model.backbone 'gated-org/model' is gated on the hub", "hf auth login"]}
    running = {}
    for name in expect:
        case = Case("classification", ["--model.backbone", name], expect[name], {"train.csv": GOOD_CSV})
        root = tmp_path / name.split("/")[0] / "run"
        argv = [*base_args(case, backbones["classification"], tmp_path, root), *case.args]
        running[name] = (root, subprocess.Popen([sys.executable, "-m", "lit_ft", *argv], env=env, text=True,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        for name, (root, process) in running.items():
            _, err = process.communicate(timeout=300)
            assert process.returncode == 2, err[-3000:]
            assert_one_actionable_line(err, expect[name])
            assert_nothing_half_written(root, early=True)
    finally:
        server.shutdown()
