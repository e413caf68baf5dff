"""`POST /predict` on LitServe: `{"inputs": INPUT}` -> one record, `{"inputs": [INPUT, ...]}` -> a list of them.

Requests that arrive together (up to `max_batch_size`, waiting at most `batch_timeout`) run as one batch
(LitServe's dynamic batching); each input is checked on its own first, so a bad one is refused alone.
"""

from dataclasses import dataclass
from typing import Any

import litserve as ls
from fastapi import Request

from lit_ft.errors import UserError
from lit_ft.serving.loaded import Loaded, load_served
from lit_ft.serving.records import TooLong, checked_rows, records_for
from lit_ft.serving.refusal import Refusal, as_response, refusal


@dataclass(frozen=True)
class Settings:
    """What each inference worker loads and how it answers.

    Attributes:
        path: The run directory, checkpoint or export to load.
        which: `best` or `last` checkpoint of a run directory.
        too_long: An input longer than the model takes: `truncate` it (its record says `truncated: true`) or
            `refuse` the request (400).
        plugins: Local plugin modules to load in the worker before the model (third-party tasks).
    """

    path: str
    which: str = "best"
    too_long: TooLong = "truncate"
    plugins: tuple[str, ...] = ()


def load_in_worker(settings: Settings) -> Loaded:
    """The model, loaded in a LitServe worker process (spawned: it imports lit_ft afresh)."""
    from lit_ft import quiet
    from lit_ft.registry import load_plugin_module

    quiet.install()
    import datasets

    datasets.disable_progress_bars()  # each request's rows become a small in-memory split
    for spec in settings.plugins:
        load_plugin_module(spec)
    return load_served(settings.path, settings.which)


@dataclass(frozen=True)
class Checked:
    """A decoded request: its rows, and whether it sent one input (answered by one record) or a list."""

    rows: dict[str, list[Any]]
    single: bool


class PredictAPI(ls.LitAPI):
    """The task's own predictions for the inputs of each request."""

    def __init__(self, settings: Settings, max_batch_size: int = 8, batch_timeout: float = 0.01) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.settings = settings

    def setup(self, device: str) -> None:
        self.loaded = load_in_worker(self.settings)

    # LitServe reads this annotation to parse the body as JSON (so no `from __future__ import annotations` here)
    def decode_request(self, request: Request, **kwargs: Any) -> Checked | Refusal:
        if not isinstance(request, dict) or "inputs" not in request:
            return refusal('the body must be a JSON object with "inputs": one input or a list of them, e.g. '
                           '{"inputs": "some text"}')
        inputs = request["inputs"]
        single = not isinstance(inputs, list)
        if not single and not inputs:
            return refusal('"inputs" is an empty list; send one input or more')
        try:
            return Checked(checked_rows(self.loaded, [inputs] if single else inputs, self.settings.too_long), single)
        except UserError as err:
            return refusal(f'"inputs": {err}')

    def batch(self, inputs: list[Any]) -> list[Any]:
        return inputs

    def predict(self, x: Any, **kwargs: Any) -> list[Any]:
        requests = x if isinstance(x, list) else [x]
        good = [r for r in requests if isinstance(r, Checked)]
        answers = iter(records_for(self.loaded, [r.rows for r in good]) if good else [])
        out = [_answer(r, next(answers)) if isinstance(r, Checked) else r for r in requests]
        return out if isinstance(x, list) else out[0]

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output: Any, **kwargs: Any) -> Any:
        if isinstance(output, Refusal):
            return as_response(output)
        return output


def _answer(request: Checked, records: list[dict[str, Any]]) -> Any:
    return records[0] if request.single else records
