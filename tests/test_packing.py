"""SFT packing: bins, sharding and resume of packed batches; packed logits and losses equal unpacked ones; refusal
of architectures that let packed examples see each other; a packed fit that resumes mid-epoch exactly."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import QUIET, cli
from sft_fixtures import write_jsonl

from lit_ft.data_summary import data_summary
from lit_ft.errors import UserError
from lit_ft.packing.attention import NAME, SPANS, attend_per_example
from lit_ft.packing.bins import (
    PackedBatchSampler,
    attends_varlen,
    pack_bins,
    packed_inputs,
    single_row,
    stack_bins,
)
from lit_ft.packing.probe import packing_problem
from lit_ft.source import DataSource
from lit_ft.tasks.sft import SFTData
from lit_ft.training.progress import batch_count

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WORDS = ["cat", "mat", "sat", "hat", "bat", "rat"]


def varied_rows(n: int) -> list[dict[str, Any]]:
    """Prompt/completion rows of different lengths (1 to 6 words each side)."""
    return [{"prompt": "say " + " ".join(WORDS[: 1 + i % 6]) + ":",
             "completion": " " + " ".join(WORDS[: 1 + (i * 5) % 6])} for i in range(n)]


def sft_data(tmp_path: Path, backbone: Path, rows: list[dict[str, Any]], **kwargs: Any) -> SFTData:
    f = write_jsonl(rows, tmp_path / "rows.jsonl")
    return SFTData(source=DataSource(train=f, validation=f), tokenizer=str(backbone), **kwargs)


def test_best_fit_decreasing_bins() -> None:
    # 5 opens bin 0, 4 opens bin 1, 3 fills bin 0, 3 goes to bin 1, 2 opens bin 2, 1 fits best in bin 1
    assert pack_bins(range(6), [5, 4, 3, 3, 2, 1], capacity=8) == [[0, 2], [1, 3, 5], [4]]
    lengths = [(7 * i) % 13 + 1 for i in range(50)]
    bins = pack_bins(range(50), lengths, capacity=16)
    assert sorted(i for b in bins for i in b) == list(range(50))
    assert all(sum(lengths[i] for i in b) <= 16 for b in bins)
    assert len(bins) == -(-sum(lengths) // 16)  # these lengths pack without a wasted row


def test_sampler_shards_bins_over_ranks_and_resumes() -> None:
    lengths = [(5 * i) % 11 + 2 for i in range(40)]
    ranks = [PackedBatchSampler(lengths, 2, capacity=16, seed=3, group_batches=2, rank=r, world_size=2)
             for r in (0, 1)]
    epoch = [list(s) for s in ranks]
    assert len(epoch[0]) == len(epoch[1]) == len(ranks[0])
    seen = sorted(i for batches in epoch for b in batches for i in b)
    bins = ranks[0].bins()
    padded = len(bins[0]) if len(bins) % 4 == 1 else 0  # a last global batch of one row lends rank 1 row 0
    assert sorted(set(seen)) == list(range(40)) and len(seen) == 40 + padded
    assert all(sum(lengths[i] for i in b) <= 2 * 16 for batches in epoch for b in batches)  # 2 rows of 16 a rank
    again = PackedBatchSampler(lengths, 2, capacity=16, seed=3, group_batches=2, rank=0, world_size=2)
    assert list(again) == epoch[0]  # deterministic
    again.set_epoch(1)
    second = list(again)
    assert second != epoch[0]
    few = [PackedBatchSampler([4, 5], 1, capacity=16, rank=r, world_size=4) for r in range(4)]
    assert [list(s) for s in few] == [[[1, 0]]] * 4  # one row for 4 ranks: each rank gets it (same batch count)
    resumed = PackedBatchSampler(lengths, 2, capacity=16, seed=3, group_batches=2, rank=0, world_size=2)
    resumed.load_state_dict({"epoch": 1, "batches_done": 2})
    assert list(resumed) == second[2:]


def build(arch: str, vocab: int, attn: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    kind = LlamaConfig if arch == "llama" else Qwen2Config
    config = kind(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()


@pytest.mark.parametrize(("arch", "attn"), [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa")])
def test_packed_logits_and_losses_equal_each_example_alone(arch: str, attn: str, tmp_path: Path,
                                                           llama: Path) -> None:
    data = sft_data(tmp_path, llama, varied_rows(6), max_length=24, packing=True)
    rows = list(data.features("train"))
    model = build(arch, len(data.tokenizer), attn)
    batch = data.train_collate([dict(r) for r in rows])
    packed, row_tokens = batch["inputs"], batch["row_tokens"]
    assert set(packed) == {"input_ids", "labels", "position_ids", "use_cache"}  # no attention mask
    width = packed["input_ids"].shape[1]
    assert 1 < len(row_tokens) < len(rows) and width <= 24 and min(row_tokens) < width  # a row with padding
    assert batch_count(batch, "tokens") == sum(len(r["input_ids"]) for r in rows) == sum(row_tokens)  # tokens/s
    by_ids = {tuple(r["input_ids"]): r for r in rows}
    with torch.no_grad():
        out = model(**packed)
        padded_loss = model(**data.collate([dict(r) for r in rows])["inputs"]).loss
        joined = model(**single_row(packed, row_tokens))  # the layout flash-attention kernels get
        per_example = model(**packed_inputs(model, batch))  # sdpa: each example attended on its own
        assert (SPANS in packed_inputs(model, batch)) is (attn == "sdpa")
        nll, tokens, seen, offset = 0.0, 0, 0, 0
        for r, count in enumerate(row_tokens):
            assert batch["spans"][r][-1][1] == count  # the row's examples, then its padding
            for start, end in batch["spans"][r]:
                row = by_ids[tuple(packed["input_ids"][r, start:end].tolist())]
                ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
                alone = model(input_ids=ids, use_cache=False)
                torch.testing.assert_close(out.logits[r, start:end], alone.logits[0], atol=1e-5, rtol=0)
                torch.testing.assert_close(joined.logits[0, offset + start : offset + end], alone.logits[0],
                                           atol=1e-5, rtol=0)
                torch.testing.assert_close(per_example.logits[r, start:end], alone.logits[0], atol=1e-5, rtol=0)
                # the example's loss read from the packed row: next-token loss on its own trained tokens
                own = torch.nn.functional.cross_entropy(out.logits[r, start : end - 1], labels[0, 1:],
                                                        reduction="sum")
                count_own = int((labels[0, 1:] != -100).sum())
                expected = model(input_ids=ids, labels=labels, use_cache=False).loss
                assert abs(float(own) / count_own - float(expected)) < 1e-5
                nll, tokens, seen = nll + float(own), tokens + count_own, seen + 1
            offset += count
    assert seen == len(rows)
    # the batch loss is the mean over every trained token of the batch, packed (either layout) or padded
    for loss in (out.loss, joined.loss, per_example.loss, padded_loss):
        assert abs(float(loss) - nll / tokens) < 1e-5


@pytest.mark.parametrize("window", [None, 3])
def test_per_example_attention_trains_as_the_block_mask(window: int | None) -> None:
    """Grouped-query heads; a sliding window shorter than an example falls back to the mask (same numbers)."""
    from transformers import AutoModelForCausalLM, MistralConfig

    config = MistralConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                           sliding_window=window)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).train()
    rows = [{"input_ids": ids, "labels": ids} for ids in (list(range(3, 8)), list(range(10, 17)), list(range(20, 25)))]
    batch = stack_bins(rows, capacity=12, pad_id=0)
    assert batch["spans"] == [[(0, 7), (7, 12)], [(0, 5)]]  # two examples of 5 tokens (attended in one call), padding
    results = []
    for inputs in (batch["inputs"], packed_inputs(model, batch)):  # Transformers' block mask, then per example
        out = model(**inputs)
        out.loss.backward()
        results.append((out.logits.detach(), out.loss.detach(),
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        model.zero_grad()
    assert model.config._attn_implementation == NAME
    (logits, loss, grads), (logits2, loss2, grads2) = results
    for r, count in enumerate(batch["row_tokens"]):
        torch.testing.assert_close(logits2[r, :count], logits[r, :count], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss2, loss, atol=1e-6, rtol=0)
    assert grads.keys() == grads2.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grads2[name], grad, atol=1e-5, rtol=1e-4)


def test_only_sdpa_backbones_switch_to_per_example_attention() -> None:
    from peft import LoraConfig, get_peft_model

    eager = build("llama", 64, "eager")
    assert not attend_per_example(eager) and eager.config._attn_implementation == "eager"
    sdpa = build("llama", 64, "sdpa")
    assert not attend_per_example(torch.compile(sdpa)) and sdpa.config._attn_implementation == "sdpa"
    elsewhere = build("llama", 64, "sdpa").to("meta")  # not on a CPU (as on a GPU): Transformers' mask stays
    assert not attend_per_example(elsewhere) and elsewhere.config._attn_implementation == "sdpa"
    assert attend_per_example(sdpa) and attend_per_example(sdpa) and sdpa.config._attn_implementation == NAME
    adapted = get_peft_model(build("llama", 64, "sdpa"), LoraConfig(r=2, target_modules=["q_proj"]))
    assert attend_per_example(adapted) and adapted.get_base_model().config._attn_implementation == NAME


def test_flash_attention_backbones_get_one_row() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = torch.nn.Module()
    for impl, one_row in (("sdpa", False), ("eager", False), ("flash_attention_2", True), ("flash_attention_3", True)):
        config._attn_implementation = impl
        model.config = config
        assert attends_varlen(model) is one_row
    assert attends_varlen(torch.nn.Linear(2, 2)) is False


def test_features_masks_and_counts_do_not_change_and_summary_counts_rows(tmp_path: Path, llama: Path) -> None:
    rows = varied_rows(20)
    plain = sft_data(tmp_path / "a", llama, rows, max_length=12, drop_untrainable=True)
    packed = sft_data(tmp_path / "b", llama, rows, max_length=12, drop_untrainable=True, packing=True,
                      batch_size=2)
    assert packed.features("train").to_dict() == plain.features("train").to_dict()
    assert packed.report == plain.report and plain.report["train"]["truncated"] > 0
    lengths = packed.features("train")["length"]
    bins = PackedBatchSampler(lengths, 2, capacity=12, seed=42, group_batches=50).bins()
    empty = 1 - sum(lengths) / (len(bins) * 12)
    assert data_summary(packed)[0].endswith(
        f"; train packed into {len(bins)} rows of 12 tokens ({empty:.1%} empty)")
    assert "packed" not in data_summary(plain)[0]


def test_architectures_that_mix_packed_examples_are_refused() -> None:
    assert packing_problem({"model_type": "llama"}) is None and packing_problem({"model_type": "gpt2"}) is None
    # OPT: per-example attention would keep its examples apart, but its own mask ignores position_ids (on a GPU);
    # Bloom: ALiBi, no positions to restart
    for refused in ("opt", "bloom"):
        problem = packing_problem({"model_type": refused})
        assert problem is not None and f"model type '{refused}'" in problem and "attend to each other" in problem


def fit(root: Path, backbone: Path, train: str, steps: int, *extra: str) -> Any:
    return cli("fit", "--config", CONFIGS / "sft_chat.yaml", "--model.backbone", backbone,
               "--data.init_args.source.train", train, "--data.init_args.format", "prompt_completion",
               "--data.init_args.max_length", "24", "--data.init_args.batch_size", "1",
               "--data.init_args.packing", "true", "--model.task_options.metrics", "[]",
               "--model.warmup", "0", "--model.schedule", "constant",
               "--trainer.max_steps", steps, "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
               "--trainer.val_check_interval", "2", "--trainer.precision", "32-true",
               "--trainer.default_root_dir", root, "--trainer.logger", "false", *QUIET, *extra)


def test_packed_fit_resumes_mid_epoch_exactly(tmp_path: Path, llama: Path) -> None:
    train = write_jsonl(varied_rows(40), tmp_path / "train.jsonl")
    straight = fit(tmp_path / "straight", llama, train, 6)
    assert straight.trainer.global_step == 6
    fit(tmp_path / "split", llama, train, 4)
    resumed = fit(tmp_path / "split", llama, train, 6, "--ckpt_path", "last")
    assert resumed.trainer.global_step == 6
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=0, rtol=0)


def test_fit_refuses_packing_on_bloom(tmp_path: Path, llama: Path) -> None:
    from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM

    bloom = tmp_path / "bloom"
    shutil.copytree(llama, bloom)
    tok = AutoTokenizer.from_pretrained(bloom)
    BloomForCausalLM(BloomConfig(vocab_size=len(tok), hidden_size=32, n_layer=1, n_head=2)).save_pretrained(bloom)
    train = write_jsonl(varied_rows(8), tmp_path / "train.jsonl")
    with pytest.raises(UserError, match="model type 'bloom' lets packed examples attend to each other"):
        fit(tmp_path / "run", bloom, train, 1)
