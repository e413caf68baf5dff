"""Causal-LM supervised fine-tuning (`sft`): data shapes and masking, batched generation, the task plugin."""

from lit_ft.tasks.sft.data import SFTData
from lit_ft.tasks.sft.task import SFTTask

__all__ = ["SFTData", "SFTTask"]
