"""The playground page `lit_ft serve` answers at `/`, in a real headless Chromium driven over the DevTools protocol
(tests/cdp.py): typed input, clicks, the rendered answer checked against the server's own JSON, a screenshot in the
test's temporary directory. Skips, with its reason, only where no Chromium can be had (`.ci/run` installs one)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdp import BROWSER_ENV, BrowserError, Page, find_browser

# the browser tests are slow: two servers start (LitServe workers), some 20-40 s on 2 busy cores
KEY = "playground-test-key"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    binary = find_browser()
    if binary is None:
        pytest.skip(f"no Chromium on PATH (install Debian's `chromium` package, as .ci/run does, or set {BROWSER_ENV})")
    try:
        page = Page(binary, tmp_path_factory.mktemp("chromium"))
    except (BrowserError, OSError) as err:
        pytest.skip(f"{binary} does not start here: {err}")
    yield page
    page.close()


class Server:
    """`lit_ft serve PATH` on a free localhost port, stopped by SIGTERM."""

    def __init__(self, path: Path, log: Path, *args: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "lit_ft", "serve", str(path), "--port",
                                             str(self.port), *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"lit_ft serve did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return urllib.request.urlopen(self.url + "/health", timeout=2).status == 200
        except OSError:
            return False

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def classifier_server(served_classifier_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(served_classifier_run, tmp_path_factory.mktemp("serve") / "classifier.log", "--api_key", KEY,
                    "--too_long", "refuse")
    yield server
    server.stop()


@pytest.mark.slow
def test_classifier_page_asks_for_the_key_then_draws_probability_bars(browser: Page, classifier_server: Server,
                                                                       tmp_path: Path) -> None:
    browser.open(classifier_server.url + "/")  # no key yet: the page shows the server's refusal and a key field
    error = browser.wait_for("document.getElementById('error').innerText")
    assert error.startswith("HTTP 401: missing or wrong API key")
    assert browser.evaluate("getComputedStyle(document.getElementById('keybox')).display") == "block"
    browser.type("#key", KEY)
    browser.click("#key-save")
    browser.wait_for("document.body.dataset.ready === 'true'")
    assert browser.evaluate("document.body.dataset.task") == "classification"
    text = "the acting was wonderful and the music great"
    browser.type("#in-text", text)
    browser.click("#submit")
    browser.wait_for("document.querySelectorAll('#bars .bar-row').length > 0")
    shown = browser.evaluate("[...document.querySelectorAll('#bars .bar-row')].map(r => [r.dataset.label, "
                             "Number(r.dataset.p), r.classList.contains('top'), r.querySelector('.fill').style.width,"
                             " r.querySelector('.pct').innerText])")
    record = classifier_server.post("/predict", {"inputs": text})  # what the server answers for the same text
    expected = sorted(record["probabilities"].items(), key=lambda kv: -kv[1])
    assert [(name, pytest.approx(p, abs=1e-6)) for name, p, *_ in shown] == expected
    assert [name for name, _, top, *_ in shown if top] == [record["label"]]
    widths = [float(width.rstrip("%")) for *_, width, _ in shown]
    assert widths == [pytest.approx(100 * p, abs=0.05) for _, p in expected]
    assert [pct for *_, pct in shown] == [f"{100 * p:.1f}%" for _, p in expected]
    assert browser.evaluate("document.getElementById('error').innerText") == ""
    png = browser.screenshot(tmp_path / "classifier.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_refused_input_shows_the_servers_line(browser: Page, classifier_server: Server) -> None:
    browser.open(f"{classifier_server.url}/?key={KEY}")  # the key from the address this time
    browser.wait_for("document.body.dataset.ready === 'true'")
    text = " ".join(["the film was good"] * 40)  # over the run's data.max_length, which this server refuses
    browser.type("#in-text", text)
    browser.click("#submit")
    error = browser.wait_for("document.getElementById('error').innerText")
    with pytest.raises(urllib.error.HTTPError) as refused:
        classifier_server.post("/predict", {"inputs": text})
    assert error == f"HTTP {refused.value.code}: {json.loads(refused.value.read())['error']['message']}"
    assert "longer than the model takes" in error and refused.value.code == 400
    browser.open(f"{classifier_server.url}/?key={KEY}&q=loved+it")  # ?q= submits on its own once the page is ready
    browser.wait_for("document.querySelectorAll('#bars .bar-row').length > 0")
    assert browser.evaluate("[document.getElementById('in-text').value, document.getElementById('error').innerText]") \
        == ["loved it", ""]


@pytest.fixture(scope="module")
def chat_server(served_chat_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(served_chat_run, tmp_path_factory.mktemp("serve") / "chat.log", "--api_key", KEY)
    yield server
    server.stop()


@pytest.mark.slow
def test_chat_page_streams_the_answer(browser: Page, chat_server: Server, tmp_path: Path) -> None:
    browser.open(f"{chat_server.url}/?key={KEY}")
    browser.wait_for("document.body.dataset.ready === 'true'")
    assert browser.evaluate("document.getElementById('chat-view').hidden") is False
    browser.evaluate("document.getElementById('max-tokens').value = '12'")
    # count the answer's text changes: a streamed answer grows in several steps
    browser.evaluate("window.updates = 0; new MutationObserver(() => window.updates++).observe("
                     "document.getElementById('chat-log'), {subtree: true, characterData: true, childList: true})")
    browser.type("#chat-input", "what is 3 plus one?")
    browser.click("#send")
    browser.wait_for("!!document.querySelector('.msg.assistant[data-done]')")
    reply = browser.evaluate("document.querySelector('.msg.assistant').textContent")
    whole = chat_server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "what is 3 plus one?"}],
                                                      "max_tokens": 12, "temperature": 0})
    assert reply == whole["choices"][0]["message"]["content"] and reply
    assert browser.evaluate("window.updates") >= 4  # the question, the answer's bubble, then 2 or more pieces
    assert browser.evaluate("document.querySelector('.msg.user').textContent") == "what is 3 plus one?"
    assert browser.evaluate("document.getElementById('error').innerText") == ""
    png = browser.screenshot(tmp_path / "chat.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PAGE = Path(__file__).resolve().parents[1] / "lit_ft" / "resources" / "playground.html"


def test_the_page_is_self_contained() -> None:
    """No external script, style, font or image: the page works offline, served from the package alone, and every
    call it makes goes to the server that served it (a path, no host)."""
    html = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"<link|\bsrc\s*=|@import|url\(|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
    assert set(re.findall(r"(?:fetch|call)\(\s*[\"'`]([^\"'`]*)", html)) == \
        {"/info", "/v1/models", "/predict", "/v1/chat/completions"}


@pytest.mark.slow
def test_entities_and_the_answer_span_are_marked_where_the_records_say(browser: Page, tmp_path: Path) -> None:
    """The page's drawing of the records of token classification and QA, from the tasks' own record builders (no
    server: the page opened as a file draws what it is given)."""
    from lit_ft.tasks.question_answering.decode import choose_answers
    from lit_ft.tasks.token_classification.task import entity_records

    browser.open(PAGE.as_uri())
    tokens = ["John", "visited", "the", "Louvre", "in", "Paris", "."]
    tags = ["B-PER", "O", "O", "B-LOC", "O", "B-LOC", "O"]
    tagged = {"id": "0", "text": " ".join(tokens), "tokens": tokens, "tags": tags,
              "entities": entity_records(tokens, tags), "truncated": False}
    browser.evaluate(f"render({json.dumps(tagged)}, {json.dumps(tagged['text'])})")
    marks = browser.evaluate("[...document.querySelectorAll('#entities mark')].map(m => [m.firstChild.textContent, "
                             "m.dataset.type])")
    assert marks == [["John", "PER"], ["Louvre", "LOC"], ["Paris", "LOC"]]
    assert browser.evaluate("document.getElementById('entities').innerText.replace(/PER|LOC/g, '')") \
        == "John visited the Louvre in Paris ."
    del tagged["entities"]  # a task run without entity_level: the page reads the IOB tags itself
    browser.evaluate(f"render({json.dumps(tagged)}, null)")
    assert browser.evaluate("[...document.querySelectorAll('#entities mark')].map(m => m.firstChild.textContent)") \
        == ["John", "Louvre", "Paris"]

    context = "The Louvre is in Paris. Paris is the capital of France."
    start = context.index("Paris", 20)  # the second Paris: the span, not the first match of its text
    merged = {0: {"id": "q0", "null_score": -3.0, "n_best": [{"text": "Paris", "score": 7.5, "start": start,
                                                               "end": start + 5}]}}
    answer = {"question": "What is the capital of France?", "context": context,
              **{k: v for k, v in choose_answers(merged, False, 0.0)[0].items() if not k.startswith("_")}}
    browser.evaluate(f"render({json.dumps(answer)}, null)")
    marked = browser.evaluate("(() => { const m = document.querySelector('#context-view mark.answer'); "
                              "return [m.previousSibling.textContent.length, m.textContent]; })()")
    assert marked == [start, "Paris"]
    browser.screenshot(tmp_path / "spans.png")
