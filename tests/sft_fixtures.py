"""Tiny causal LMs (Llama-style and GPT-2) with a byte-level BPE tokenizer trained here, and small SFT data files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIALS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
# one line per message, assistant turns closed by EOS: the shape of most real templates
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}</s>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "the cat sat on the mat",
    "what is the capital of france? the capital of france is paris.",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction: ### Input: ### Response: ### System: ### User: ### Assistant:",
    "def add(a, b):\n    return a + b\nassert add(1, 2) == 3",
    "hello world, how are you? I am fine, thank you!",
]


def write_tokenizer(
    out: Path,
    chat_template: str | None = CHAT_TEMPLATE,
    merges: bool = True,
    corpus: list[str] | None = None,
    num_merges: int = 300,
) -> Path:
    """A byte-level BPE tokenizer (any text round-trips); `merges=False` keeps one token per character.

    `corpus` (default: a few sentences) and `num_merges` set how well it compresses: trained on real text with
    thousands of merges it cuts that text into about as many tokens as a real model's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    size = len(alphabet) + len(SPECIALS) + (num_merges if merges else 0)
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, initial_alphabet=alphabet)
    tok.train_from_iterator(corpus or CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=SPECIALS[3:],
    )
    if chat_template:
        fast.chat_template = chat_template
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


def make_causal_lm(
    out: Path, arch: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 2, **tokenizer_kwargs: Any
) -> Path:
    """A randomly initialised causal LM (`llama` or `gpt2`, hidden 32, 2 layers) saved with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig

    write_tokenizer(out, **tokenizer_kwargs)
    tok = AutoTokenizer.from_pretrained(out)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if arch == "llama":
        config: Any = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=256,
            **ids,
        )
    else:
        config = GPT2Config(
            vocab_size=len(tok),
            n_embd=hidden,
            n_layer=layers,
            n_head=2,
            n_positions=256,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def chat_rows(n: int = 12) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"what is {i} plus one?"},
                    {"role": "assistant", "content": f"it is {i + 1}."},
                    {"role": "user", "content": "and twice that?"},
                    {"role": "assistant", "content": f"that is {2 * (i + 1)}."},
                ]
            }
        )
    return rows


def pc_rows(n: int = 12) -> list[dict[str, Any]]:
    return [{"prompt": f"say {w} twice:", "completion": f" {w} {w}"} for w in ["cat", "mat", "sat", "hat"] * (n // 4)]


def write_standins(out: Path) -> dict[str, str]:
    """Small files in the shape of each recipe's real data (alpaca, lima, bitext, chat, mbpp)."""
    import csv

    words = ["cat", "mat", "sat", "hat"]
    alpaca = [
        {"instruction": f"repeat {w}", "input": "" if i % 2 else "twice", "output": f"{w} {w}"}
        for i, w in enumerate(words * 3)
    ]
    lima = [
        {"instruction": f"say {w}", "input": "", "output": w, "history": [["hi", "hello"]] if i % 3 == 0 else []}
        for i, w in enumerate(words * 3)
    ]
    mbpp = [
        {
            "text": "Write a function to add two numbers.",
            "code": "def add(a, b):\n    return a + b",
            "task_id": 100 + i,
            "test_setup_code": "",
            "test_list": [f"assert add({i}, 1) == {i + 1}"],
            "challenge_test_list": [],
        }
        for i in range(12)
    ]
    files = {
        "alpaca": str(out / "alpaca.json"),
        "lima": str(out / "lima.json"),
        "bitext": str(out / "bitext.csv"),
        "chat": write_jsonl(chat_rows(), out / "chat.jsonl"),
        "mbpp": write_jsonl(mbpp, out / "mbpp.jsonl"),
    }
    Path(files["alpaca"]).write_text(json.dumps(alpaca))
    Path(files["lima"]).write_text(json.dumps(lima))
    with open(files["bitext"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["instruction", "intent", "response"])
        writer.writerows([[f"where is my {w}?", "track", f"your {w} is on its way."] for w in words * 3])
    return files
