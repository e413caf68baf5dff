"""Preference pairs: rows of (prompt, chosen, rejected) in any of three shapes -> token ids -> pair batches.

Batch contract (what `collate` returns for train / validation / test; the `dpo` and `reward_model` tasks read it):

    {"inputs": {"input_ids": LongTensor[2B, L], "attention_mask": LongTensor[2B, L]}  (+ "token_type_ids" when the
                tokenizer makes them), rows 0..B-1 the chosen sequences (prompt + chosen completion), rows B..2B-1 the
                rejected ones of the same pairs, right padded;
     "completion_mask": BoolTensor[2B, L], True on the completion tokens (those whose log-probabilities count);
     "margin": FloatTensor[B], only when `margin_column` is set;
     "ref_chosen_logps", "ref_rejected_logps": FloatTensor[B], only when the features hold precomputed reference
                log-probabilities (columns of the same names);
     "id": list of B ids; the rows (`lit_ft.rows.ROW`) as every task's batches carry them}

Predict batches (rows with a prompt, or a single `text`, and no pair): `inputs` of B sequences (prompt, plus the
completion when a row has one), `completion_mask` as above, `prompt_ids` (list of B token-id lists) and `id`.
"""

from __future__ import annotations

from lit_ft.datamodule import TaskDataModule


class PreferenceData(TaskDataModule):
    """Placeholder: being written."""

    task_name = "preference"
