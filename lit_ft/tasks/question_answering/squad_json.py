"""Reading SQuAD-style JSON files: `{"data": [...]}` with nested articles (v1.1 / v2.0) or flat rows.

The `datasets` json builder reads flat JSON lists and JSON Lines; the official SQuAD files wrap everything in
one object (`data -> paragraphs -> qas`), so they are flattened here into the rows the task reads: `id`,
`title`, `question`, `context`, `answers = {"text": [...], "answer_start": [...]}`. Unanswerable questions
(`is_impossible`, v2.0) get empty answer lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from lit_ft.errors import UserError, one_line, user_error_in_chain

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "title": datasets.Value("string"),
    "question": datasets.Value("string"),
    "context": datasets.Value("string"),
    "answers": {
        "text": datasets.List(datasets.Value("string")), "answer_start": datasets.List(datasets.Value("int32")),
    },
})


def is_squad_json(path: Path) -> bool:
    """True for a `.json` file holding one object with a `data` list (the official SQuAD layout)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        head = f.read(1024).lstrip()
    if not head.startswith("{"):
        return False
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # JSON Lines with a .json suffix: the datasets builder reads those
        return False
    return isinstance(loaded, dict) and isinstance(loaded.get("data"), list)


def answer_lists(value: Any) -> dict[str, list[Any]]:
    """Answers as `{"text": [...], "answer_start": [...]}` from that shape, a list of dicts, or None."""
    if value is None:
        return {"text": [], "answer_start": []}
    if isinstance(value, dict):
        starts = value.get("answer_start") or []
        return {"text": list(value.get("text") or []), "answer_start": [int(s) for s in starts]}
    return {"text": [a["text"] for a in value], "answer_start": [int(a["answer_start"]) for a in value]}


def squad_rows(path: str, stamp: tuple[float, int] = (0.0, 0)) -> Iterator[dict[str, Any]]:
    """The questions of a SQuAD JSON file as flat rows (`stamp` only keys the `datasets` cache to the file)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    row = 0
    for article in data:
        title = article.get("title", "") if isinstance(article, dict) else ""
        if isinstance(article, dict) and "paragraphs" in article:
            questions = [(qa, paragraph.get("context")) for paragraph in article["paragraphs"]
                         for qa in paragraph.get("qas", [])]
        else:  # already flat (`{"data": [{id, question, context, answers}]}`)
            questions = [(article, article.get("context") if isinstance(article, dict) else None)]
        for qa, context in questions:
            yield {"title": title if isinstance(title, str) else str(title), **_question(qa, context, row, path)}
            row += 1


def _question(qa: Any, context: Any, row: int, path: str) -> dict[str, Any]:
    """One question as a flat row; a question that is not `{id, question, answers}` fails naming its row. The id
    may be missing (rows are joined by position, ids are data)."""
    where = f"question {row} (0-based, in file order) of '{path}'"
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not isinstance(context, str):
        raise UserError(f"{where} needs a text 'question' and its paragraph a text 'context'; got "
                        f"{str(qa)[:80]!r}: fix the row")
    try:
        answers = answer_lists(None if qa.get("is_impossible") else qa.get("answers"))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where} has answers {str(qa.get('answers'))[:80]!r}, not a list of {{text, answer_start}}"
                        ": fix the row") from None
    row_id = qa.get("id")
    return {"id": None if row_id is None else str(row_id), "question": qa["question"], "context": context,
            "answers": answers}


def load_squad_json(path: Path, key: str) -> datasets.Dataset:
    """Flatten a SQuAD JSON file into a cached `datasets.Dataset` (rebuilt when the file changes)."""
    stat = path.stat()
    try:
        ds = datasets.Dataset.from_generator(
            squad_rows, gen_kwargs={"path": str(path.resolve()), "stamp": (stat.st_mtime, stat.st_size)},
            features=FEATURES,
        )
    except Exception as err:
        found = user_error_in_chain(err)  # a bad row, named by `_question`
        if found is not None:
            raise UserError(one_line(f"{key}: {found}")) from err
        raise UserError(
            f"{key}: could not read '{path}' as SQuAD JSON (data -> paragraphs -> qas with id, question, answers, "
            f"or data -> rows with id, question, context, answers): {one_line(str(err))[:300]}"
        ) from err
    assert isinstance(ds, datasets.Dataset)
    return ds
