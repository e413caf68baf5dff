"""`lit_ft serve`: the real server in a subprocess on a free localhost port, over a quickstart-like classifier (a
tiny BERT fitted for a few steps) and a tiny chat SFT model; requests by `urllib` and by the real `openai` client.

The answers are checked against what the project computes itself: `/predict` records against `lit_ft predict`'s
file, batched answers against one-by-one answers, the OpenAI routes against `/predict`'s greedy generation.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from builders import make_tiny_bert
from helpers import QUIET
from sft_fixtures import chat_rows, make_causal_lm, write_jsonl

from lit_ft.commands.cli import main, run

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "lit_ft" / "resources" / "quickstart"
KEY = "test-key"
STARTUP_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `lit_ft serve` subprocess and a small JSON client for it."""

    def __init__(self, target: Path, *options: str, key: str | None = None) -> None:
        self.port = free_port()
        self.key = key
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1", "LIT_FT_API_KEY": key or ""}
        self.log = open(target.parent / f"serve_{self.port}.log", "w+")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([sys.executable, "-m", "lit_ft", "serve", str(target), "--port",
                                         str(self.port), *options], stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self) -> Server:
        """Until `/health` answers 200 (the workers loaded the model)."""
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited early: {self.output()}"
            try:
                if self.request("GET", "/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the server did not come up: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                key: str | None = "default") -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        key = self.key if key == "default" else key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                text = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as err:
            text, status = err.read().decode(), err.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def predict(self, inputs: Any) -> Any:
        status, answer = self.request("POST", "/predict", {"inputs": inputs})
        assert status == 200, answer
        return answer

    def stop(self) -> int:
        """SIGTERM, as a process manager stops it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=90)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.log.close()
        return code


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart recipe on a tiny BERT, fitted for a few steps, and its `lit_ft predict` file."""
    root = tmp_path_factory.mktemp("classifier")
    bert = make_tiny_bert(root / "bert")
    run_dir = root / "run"
    common = ["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.backbone", str(bert),
              "--trainer.default_root_dir", str(run_dir), "--trainer.logger", "false", *QUIET]
    run(["fit", *common, "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1"])
    run(["predict", *common, "--ckpt_path", "best"])
    return run_dir


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat SFT recipe on a tiny Llama, fitted for two steps."""
    root = tmp_path_factory.mktemp("sft")
    llama = make_causal_lm(root / "llama")
    train = write_jsonl(chat_rows(12), root / "chat.jsonl")
    run_dir = root / "run"
    run(["fit", "--config", str(ROOT / "configs" / "sft_chat.yaml"), "--model.backbone", str(llama),
         "--data.init_args.source.train", train, "--model.task_options.max_new_tokens", "6",
         "--data.init_args.max_length", "48", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
         "--trainer.default_root_dir", str(run_dir), "--trainer.logger", "false", *QUIET])
    return run_dir


@pytest.fixture(scope="module")
def classifier(classifier_run: Path) -> Iterator[Server]:
    server = Server(classifier_run, "--max_batch_size", "8", "--batch_timeout", "0.2").wait()
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0


@pytest.fixture(scope="module")
def chat(sft_run: Path) -> Iterator[Server]:
    """The chat model's server: three workers (/predict, chat, completions) each load the model (~30 s), so the
    tests that use it are marked slow."""
    server = Server(sft_run, "--too_long", "refuse", key=KEY).wait()
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0


def close(a: Any, b: Any, where: str = "") -> None:
    """Equal records, floats within 1e-5."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_predict_answers_the_records_lit_ft_predict_writes(classifier: Server, classifier_run: Path) -> None:
    written = [json.loads(line) for line in (classifier_run / "predictions.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in written]
    served = classifier.predict(texts)
    close([{k: v for k, v in r.items() if k != "truncated"} for r in served], written)
    assert not any(r["truncated"] for r in served)
    one = classifier.predict({"text": texts[0]})  # one input (a row object) -> one record
    close({k: v for k, v in one.items() if k != "truncated"}, written[0])


def test_concurrent_requests_batched_equal_one_by_one(classifier: Server, classifier_run: Path) -> None:
    texts = [r["text"] for r in map(json.loads, (classifier_run / "predictions.jsonl").read_text().splitlines())]
    alone = [classifier.predict(t) for t in texts[:12]]
    with ThreadPoolExecutor(12) as pool:  # 12 requests at once, batched up to 8 by the server
        together = list(pool.map(classifier.predict, texts[:12]))
    close(together, alone)


def test_health_and_info(classifier: Server, classifier_run: Path) -> None:
    assert classifier.request("GET", "/health") == (200, "ok")
    status, info = classifier.request("GET", "/info")
    assert status == 200
    assert info["task"] == "classification" and info["labels"] == ["negative", "positive"]
    assert info["source"]["run_dir"] == str(classifier_run) and info["lit_ft_version"]
    assert classifier.request("GET", "/v1/models")[0] == 404  # no generation routes for a classifier


def test_bad_requests_get_one_line_4xx_and_the_server_keeps_serving(classifier: Server) -> None:
    cases = {
        b'{"inputs": "unclosed': (400, "malformed JSON"),
        b'{"input": "a typo in the key"}': (400, '"inputs"'),
        b'{"inputs": 5}': (400, "input 0 is int"),
        b'{"inputs": {"txt": "wrong column"}}': (400, "text_column 'text' not found in the request's inputs"),
        b'{"inputs": ["fine", {"txt": "wrong column"}]}': (400, "row '1' of the request's inputs has an empty"),
        b'{"inputs": []}': (400, "empty list"),
    }
    for body, (status, says) in cases.items():
        got, answer = classifier.request("POST", "/predict", raw=body)
        message = answer["error"]["message"]
        assert got == status and says in message and "\n" not in message, (body, answer)
    long = " ".join(["film"] * 500)  # past the recipe's max_length of 64: truncated, and flagged
    assert classifier.predict(long)["truncated"] is True
    assert classifier.predict("still serving")["label"] in ("negative", "positive")


@pytest.mark.slow
def test_api_key_guards_every_route_but_health(chat: Server) -> None:
    assert chat.request("GET", "/health", key=None) == (200, "ok")
    for method, path, body in (("GET", "/info", None), ("POST", "/predict", {"inputs": "hi"}),
                               ("GET", "/v1/models", None)):
        status, answer = chat.request(method, path, body, key=None)
        assert status == 401 and "API key" in answer["error"]["message"]
        assert chat.request(method, path, body, key="wrong")[0] == 401
    assert chat.request("GET", "/info")[0] == 200


@pytest.mark.slow
def test_openai_client_chat_and_completions(chat: Server) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=chat.url + "/v1", api_key=KEY, max_retries=0)
    model = client.models.list().data[0].id
    question = "what is 3 plus one?"
    greedy = chat.predict(question)["prediction"]  # the task's own greedy generation, 6 new tokens
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                            temperature=0, max_tokens=6)
    assert answer.choices[0].message.content.strip() == greedy
    assert 0 < answer.usage.completion_tokens <= 6 and answer.usage.prompt_tokens > 0
    pieces = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                            temperature=0, max_tokens=6, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in pieces).strip() == greedy
    sampled = [client.completions.create(model=model, prompt="once upon", max_tokens=5, temperature=1.0, seed=7)
               .choices[0].text for _ in range(2)]
    assert sampled[0] == sampled[1] and sampled[0]
    two = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], n=2,
                                         temperature=0, max_tokens=6)
    assert [c.message.content.strip() for c in two.choices] == [greedy, greedy]
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], temperature=9)


@pytest.mark.slow
def test_generation_batched_equals_one_by_one(chat: Server) -> None:
    """Greedy generation of prompts of different lengths, batched (left-padded) by the server, equals each alone."""
    prompts = [f"what is {i} plus one?" + " and then?" * (i % 3) for i in range(6)]
    alone = [chat.predict(p)["prediction"] for p in prompts]
    with ThreadPoolExecutor(6) as pool:
        together = [r["prediction"] for r in pool.map(chat.predict, prompts)]
    assert together == alone
    assert [r["prediction"] for r in chat.predict(prompts)] == alone  # one request with a list: one batch


@pytest.mark.slow
def test_stop_strings_end_the_answer(chat: Server) -> None:
    body = {"prompt": "once upon", "max_tokens": 8, "temperature": 0}
    full = chat.request("POST", "/v1/completions", body)[1]["choices"][0]["text"]
    assert len(full) > 2
    stop = full[1:3]
    cut = chat.request("POST", "/v1/completions", {**body, "stop": [stop]})[1]["choices"][0]["text"]
    assert cut == full[: full.index(stop)]


@pytest.mark.slow
def test_too_long_input_refused_by_option(chat: Server) -> None:
    status, answer = chat.request("POST", "/predict", {"inputs": "word " * 200})
    assert status == 400 and "longer than the model takes" in answer["error"]["message"]


@pytest.mark.slow  # a server of its own (~25 s)
def test_overload_503_then_sigterm_finishes_in_flight_and_exits_0(classifier_run: Path) -> None:
    server = Server(classifier_run / "export", "--max_queue", "2", "--batch_timeout", "0.5", "--max_batch_size",
                    "2").wait()
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = [s for s, _ in pool.map(lambda i: server.request("POST", "/predict", {"inputs": f"t {i}"}),
                                               range(16))]
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2
        assert server.predict("served after the overload")["label"] in ("negative", "positive")
        answers: list[int] = []
        slow = threading.Thread(target=lambda: answers.append(
            server.request("POST", "/predict", {"inputs": ["in flight"] * 4})[0]))
        slow.start()
        time.sleep(0.1)  # the request is in the batch's 0.5 s window when the signal comes
        code = server.stop()
        slow.join(timeout=60)
    finally:
        if server.process.poll() is None:
            server.stop()
    assert code == 0, server.output() if not server.log.closed else code
    assert answers == [200]


@pytest.mark.parametrize(("argv", "says"), [
    (["--port", "80"], "--port 80 is out of range"),
    (["--host", "example.com"], "--host 'example.com'"),
    (["--max_batch_size", "0"], "--max_batch_size must be 1 or more"),
    (["--batch_timeout", "200"], "--batch_timeout (200.0) must be 0 or more and below --timeout"),
])
def test_options_out_of_their_domain_are_one_line(classifier_run: Path, argv: list[str], says: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["serve", str(classifier_run), *argv])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.startswith("lit_ft: error: ") and says in err and "\n" not in err


@pytest.mark.parametrize("target", ["missing_dir", "predict.jsonl"])
def test_a_path_that_holds_no_model_is_one_line(tmp_path: Path, target: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "predict.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit) as stop:
        main(["serve", str(tmp_path / target)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "give a run directory" in err and "\n" not in err


def test_the_playground_page_is_served_at_the_root_when_present(classifier_run: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from lit_ft.serving import server
    from lit_ft.serving.describe import describe
    from lit_ft.serving.guard import Gate
    from lit_ft.serving.predict_api import Settings

    serving = server.Serving(Settings(str(classifier_run)), describe(str(classifier_run)))
    monkeypatch.setattr(server, "PLAYGROUND", tmp_path / "missing.html")
    client = TestClient(server.build_server(serving, Gate(None, 8)).app)  # no workers: routes that need none
    assert client.get("/").json()["routes"][0] == "POST /predict"
    page = tmp_path / "playground.html"
    page.write_text("<!doctype html><title>lit_ft</title>")
    monkeypatch.setattr(server, "PLAYGROUND", page)
    assert client.get("/").text == page.read_text() and client.get("/info").json()["task"] == "classification"
