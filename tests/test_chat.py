"""`lit_ft chat`, driven in a pseudo-terminal as a user drives it: history through the training chat template,
/system, /reset, /history, Ctrl-C stopping one answer (not the program) and ending the chat at the prompt."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_ft.commands.chat import PROMPT_END, PROMPT_START, USER_PROMPT
from lit_ft.commands.cli import main

pexpect = pytest.importorskip("pexpect")
LIT_FT = [sys.executable, "-m", "lit_ft"]
TIMEOUT = 60  # a stuck chat fails the test instead of hanging it


def spawn(*args: str) -> pexpect.spawn:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(LIT_FT[0], [*LIT_FT[1:], "chat", *args], env=env, encoding="utf-8",
                          codec_errors="replace", timeout=TIMEOUT, dimensions=(50, 400))
    child.expect_exact(USER_PROMPT)
    return child


def say(child: pexpect.spawn, line: str) -> str:
    """Send one line; what the chat printed before its next prompt (the pty's CRLF as LF)."""
    child.sendline(line)
    child.expect_exact(USER_PROMPT)
    echoed = child.before.replace("\r\n", "\n")
    return echoed[len(line) + 1:] if echoed.startswith(line) else echoed


def shown_prompt(output: str) -> str:
    start = output.index(PROMPT_START + "\n") + len(PROMPT_START) + 1
    return output[start:output.index("\n" + PROMPT_END)]


def rendered(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = True) -> str:
    """The conversation through the tokenizer's own chat template, as Transformers renders it."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)


def answer(output: str) -> str:
    return output.split("bot> ", 1)[1].rstrip("\n").strip()


def test_history_system_and_reset_through_the_training_template(served_chat_run: Path, llama: Path) -> None:
    template = AutoTokenizer.from_pretrained(llama)  # the tokenizer the run trained with, and its chat template
    child = spawn(str(served_chat_run), "--max_new_tokens", "6", "--show_prompt")
    first = say(child, "what is 3 plus one?")
    second = say(child, "and twice that?")
    said = [{"role": "user", "content": "what is 3 plus one?"}, {"role": "assistant", "content": answer(first)},
            {"role": "user", "content": "and twice that?"}, {"role": "assistant", "content": answer(second)}]
    assert shown_prompt(first) == rendered(template, said[:1])
    assert shown_prompt(second) == rendered(template, said[:3])  # the first answer is in the second prompt
    assert "(system message set)" in say(child, "/system answer in one word")
    system = {"role": "system", "content": "answer in one word"}
    assert shown_prompt(say(child, "/history")) == rendered(template, [system, *said], generation_prompt=False)
    assert "(conversation cleared)" in say(child, "/reset")
    assert shown_prompt(say(child, "/history")) == rendered(template, [system], generation_prompt=False)
    third = say(child, "hello")
    assert shown_prompt(third) == rendered(template, [system, {"role": "user", "content": "hello"}])
    child.sendintr()  # Ctrl-C at the prompt ends the chat cleanly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.fixture(scope="module")
def endless_export(served_chat_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's export with a zero EOS row in the output layer: its logit stays 0 while the random model's largest
    logit is positive, so greedy decoding never stops on its own."""
    out = tmp_path_factory.mktemp("endless") / "export"
    shutil.copytree(served_chat_run / "export", out)
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        model.get_output_embeddings().weight[AutoTokenizer.from_pretrained(out).eos_token_id] = 0
    model.save_pretrained(out)
    return out


def test_ctrl_c_stops_the_answer_not_the_chat(endless_export: Path) -> None:
    child = spawn(str(endless_export), "--max_new_tokens", "1000000")
    child.sendline("tell me a long story")
    child.expect_exact("bot> ")
    child.expect(r"\S")  # the answer is streaming
    shown = child.after
    child.sendintr()
    child.expect_exact(" [stopped]")
    shown += child.before.replace("^C", "")  # the terminal echoes Ctrl-C as ^C
    child.expect_exact(USER_PROMPT)  # a million tokens take hours: only the stop brings the prompt back this soon
    said = [{"role": "user", "content": "tell me a long story"},
            {"role": "assistant", "content": shown.replace("\r\n", "\n").strip()}]
    history = shown_prompt(say(child, "/history"))  # the answer so far is kept as the assistant's turn
    assert history == rendered(AutoTokenizer.from_pretrained(endless_export), said, generation_prompt=False)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_classifier_and_bad_options_are_refused_in_one_line(served_classifier_run: Path, served_chat_run: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    classifier, missing = served_classifier_run, tmp_path / "missing"
    for args, message in [
        ([str(classifier)], f"lit_ft: error: '{classifier}' holds a classification model; lit_ft chat talks to "
                            "generation models trained on conversations (sft): use `lit_ft predict` or `lit_ft serve` "
                            "for this one"),
        ([str(served_chat_run), "--temperature", "-1"],
         "lit_ft: error: --temperature must be 0 (greedy) or more, got -1.0"),
        ([str(missing)], f"lit_ft: error: '{missing}' does not exist"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(["chat", *args])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(message), err
