"""Token classification (NER, POS tagging, chunking): the built-in task `token_classification`.

- `schemes`: IOB1 / IOB2 / BIOES parsing (seqeval's default mode) and conversion
- `conll`:   the CoNLL file reader
- `data`:    `TokenClassificationData`, word-to-sub-token label alignment
- `metrics`: entity precision / recall / F1 and token accuracy as torchmetrics
- `task`:    `TokenClassificationTask`, the plugin (model, metrics, prediction records)
"""

from lit_ft.tasks.token_classification.data import TokenClassificationData
from lit_ft.tasks.token_classification.task import TokenClassificationTask

__all__ = ["TokenClassificationData", "TokenClassificationTask"]
