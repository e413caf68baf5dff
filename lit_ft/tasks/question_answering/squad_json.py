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

ENCODING = "utf-8-sig"  # UTF-8 with or without a byte-order mark (which would hide the leading `{`)
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
    with open(path, encoding=ENCODING) as f:
        head = f.read(1024).lstrip()
    if not head.startswith("{"):
        return False
    try:
        loaded = json.loads(path.read_text(encoding=ENCODING))
    except json.JSONDecodeError:  # JSON Lines with a .json suffix: the datasets builder reads those
        return False
    return isinstance(loaded, dict) and isinstance(loaded.get("data"), list)


ANSWERS_SHAPE = '{"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}'


def answer_lists(value: Any, where: str = "a row", column: str | None = None) -> dict[str, list[Any]]:
    """Answers as `{"text": [...], "answer_start": [...]}` from that shape, a list of dicts, or None.

    Any other shape (a string, a list of strings, texts without starts) fails naming `where` (the row) and `column`
    (the `data.answers_column` of flat rows; None: the `answers` key of a SQuAD JSON file).
    """
    if value is None:
        return {"text": [], "answer_start": []}
    if isinstance(value, dict) and isinstance(value.get("text") or [], list):
        texts, starts = list(value.get("text") or []), value.get("answer_start") or []
    elif isinstance(value, list) and all(isinstance(a, dict) and "text" in a and "answer_start" in a for a in value):
        texts, starts = [a["text"] for a in value], [a["answer_start"] for a in value]
    else:
        raise _shape_error(where, column, f"holds {_short(value)} ({type(value).__name__})")
    if not isinstance(starts, list):
        raise _shape_error(where, column, f"holds {_short(value)} ({type(value).__name__})")
    if len(starts) != len(texts):
        raise _shape_error(where, column, f"holds {len(texts)} answer texts but {len(starts)} answer_start values")
    if not all(isinstance(t, str) for t in texts) or not all(_is_start(s) for s in starts):
        raise _shape_error(where, column, f"holds {_short(value)}, whose texts must be strings and starts numbers")
    return {"text": texts, "answer_start": [int(s) for s in starts]}


def _is_start(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shape_error(where: str, column: str | None, problem: str) -> UserError:
    fix = "fix the row" if column is None else "fix the row or set data.answers_column"
    return UserError(f"{where}: {'key' if column is None else 'column'} '{column or 'answers'}' {problem}; expected "
                     f"{ANSWERS_SHAPE} (empty lists: unanswerable); {fix}")


def squad_rows(path: str, stamp: tuple[float, int] = (0.0, 0)) -> Iterator[dict[str, Any]]:
    """The questions of a SQuAD JSON file as flat rows (`stamp` only keys the `datasets` cache to the file)."""
    data = json.loads(Path(path).read_text(encoding=ENCODING))["data"]
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
    row_id = qa.get("id")
    named = where if row_id is None else f"row '{row_id}' of file '{path}'"
    answers = answer_lists(None if qa.get("is_impossible") else qa.get("answers"), named)
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
