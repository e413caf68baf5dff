"""lit_ft.generation.decoding and lit_ft.generation.task: one batched generation path for decoder-only
and encoder-decoder models, one `extract_code`, and one option vocabulary for the seq2seq and sft tasks."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from builders import WORDS
from sft_fixtures import make_causal_lm
from test_seq2seq import make_tiny_t5
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from lit_ft.generation.decoding import extract_code, generate, pad_prompts
from lit_ft.generation.task import GenerationTask
from lit_ft.task import restored_options
from lit_ft.tasks.seq2seq import Seq2SeqTask
from lit_ft.tasks.sft.task import SFTTask

pytestmark = pytest.mark.usefixtures("single_thread")
OPTIONS = {"metrics", "monitor", "generate_examples", "max_new_tokens", "generate_kwargs", "sample_rows"}


def make_tiny_bart(out: Path) -> Path:
    """A random BART: its decoder starts from its EOS token, which a stop-at-EOS cut must not take for the end."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.save_pretrained(out)
    config = BartConfig(vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=64, bos_token_id=0, pad_token_id=1, eos_token_id=2,
                        decoder_start_token_id=2, forced_eos_token_id=None)
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = tmp_path_factory.mktemp("generation")
    return {
        "llama": make_causal_lm(made / "llama"),
        "gpt2": make_causal_lm(made / "gpt2", arch="gpt2"),
        "t5": make_tiny_t5(made / "t5", WORDS),
        "bart": make_tiny_bart(made / "bart"),
    }


PROMPTS = ["the cat sat on the mat", "a dog", "what is the capital of the big red house near the river"]


@pytest.mark.parametrize(("arch", "kwargs"), [("llama", {}), ("gpt2", {}), ("t5", {}), ("t5", {"num_beams": 3}),
                                              ("bart", {}), ("bart", {"num_beams": 2})])
def test_batched_generation_equals_hf_generate_one_prompt_at_a_time(
    models: dict[str, Path], arch: str, kwargs: dict[str, int]
) -> None:
    """Padding (left for decoder-only, right for encoder-decoder) and the cut at the first stop token change
    nothing: each text equals Transformers' own `generate` on that prompt alone, decoded from the new tokens."""
    tok = AutoTokenizer.from_pretrained(models[arch])
    auto = AutoModelForCausalLM if arch in ("llama", "gpt2") else AutoModelForSeq2SeqLM
    model = auto.from_pretrained(models[arch]).eval()
    prompts = [tok(t)["input_ids"] for t in PROMPTS]
    assert len({len(p) for p in prompts}) == 3  # the batch really pads
    if model.config.is_encoder_decoder and not kwargs:
        # random encoder-decoders say only special tokens when greedy: make them say words (no EOS before 4 tokens)
        kwargs = {"min_new_tokens": 4, "suppress_tokens": [i for i in tok.all_special_ids if i != tok.eos_token_id]}
    batched = generate(model, tok, prompts, max_new_tokens=10, **kwargs)
    expected = []
    for prompt in prompts:
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                 pad_token_id=pad, **kwargs)
        new = out[0, 1:] if model.config.is_encoder_decoder else out[0, len(prompt):]
        expected.append(tok.decode(new, skip_special_tokens=True).strip())
    assert batched == expected
    assert any(batched)  # a random model still says something


def test_pad_prompts_left_and_right() -> None:
    ids, mask = pad_prompts([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_prompts([[5, 6, 7], [8]], pad_id=0, left=False)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize(("text", "program"), [
    ("here:\n```python\ndef f():\n    return 1\n```\nbye", "def f():\n    return 1"),
    ("Here you go:\n```text\nnot code\n```\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```",
     "def f():\n    return 1"),
    ("```\nprint(1)\n```", "print(1)"),
    ("```py\nprint(2)", "print(2)"),  # cut at the token limit
    ("def f():\n    return 1\n```", "def f():\n    return 1"),  # the prompt opened the fence
    ("x = 1\n```\nThis sets x.", "x = 1"),
    ("def g():\n    return 3", "def g():\n    return 3"),
])
def test_extract_code(text: str, program: str) -> None:
    assert extract_code(text) == program


def test_one_option_vocabulary() -> None:
    for task in (Seq2SeqTask, SFTTask):
        assert issubclass(task, GenerationTask)
        assert OPTIONS <= set(inspect.signature(task.__init__).parameters)
    assert not {"num_beams", "num_samples"} & set(inspect.signature(Seq2SeqTask.__init__).parameters)


def test_options_under_their_earlier_names_still_load() -> None:
    """A checkpoint saved with `num_beams` / `num_samples` restores them as `generate_kwargs` / `sample_rows`."""
    with pytest.warns(UserWarning, match=r"num_beams is now model.task_options.generate_kwargs.num_beams"):
        merged = restored_options(Seq2SeqTask, {"num_beams": 4, "num_samples": 2, "max_new_tokens": 9},
                                  {"max_new_tokens": 5})
    assert merged == {"generate_kwargs": {"num_beams": 4}, "sample_rows": 2, "max_new_tokens": 5}
    task = Seq2SeqTask({}, **merged)
    assert (task.generate_kwargs, task.sample_rows, task.max_new_tokens) == ({"num_beams": 4}, 2, 5)


def test_bad_options_name_the_setting() -> None:
    with pytest.raises(ValueError, match=r"unknown seq2seq metrics \['pass@1'\].*choose from"):
        Seq2SeqTask({}, metrics=["pass@1"])
    with pytest.raises(ValueError, match=r"model.task_options.max_new_tokens must be positive, got 0"):
        SFTTask({}, max_new_tokens=0)
