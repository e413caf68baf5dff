"""Extractive question answering (SQuAD v1.1 / v2.0): windows over long contexts, span decoding, EM / F1."""

from lit_ft.tasks.question_answering.data import QuestionAnsweringData
from lit_ft.tasks.question_answering.task import QuestionAnsweringTask

__all__ = ["QuestionAnsweringData", "QuestionAnsweringTask"]
