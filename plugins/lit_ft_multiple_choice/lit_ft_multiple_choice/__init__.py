"""lit_ft_multiple_choice: an out-of-tree lit_ft task plugin for SWAG-style multiple choice.

Installed, it registers the task `multiple_choice` through the `lit_ft.tasks` entry point (see pyproject.toml).
"""

from lit_ft_multiple_choice.data import MultipleChoiceData
from lit_ft_multiple_choice.task import MultipleChoiceTask

__all__ = ["MultipleChoiceData", "MultipleChoiceTask"]
__version__ = "0.1.0"
