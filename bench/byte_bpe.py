"""The byte-level BPE tokenizer the causal-LM benches train for their random-init models (any text round-trips)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def train_byte_bpe(texts: Iterable[str], vocab_size: int) -> Any:
    """A `PreTrainedTokenizerFast` with `<pad>`, `<s>`, `</s>`, its BPE merges learnt from `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
