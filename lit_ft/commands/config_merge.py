"""Config pieces merge dict options key by key, as the command line does.

jsonargparse (4.53) applies each `--config` file by replacing every option the file sets, so a dict option
(`model.task_options`, `data.init_args.label_map`) given in a second piece or a `LIT_FT_OVERLAY` lost the keys of
the recipe without a word, while `--model.task_options.KEY value` merged into them. `MergingConfigFile` is the
`--config` action of lit_ft's parsers: after jsonargparse applies a file, every dict the file changed is the
earlier dict updated by the file's, key by key and recursively (`generate_kwargs` inside `task_options` too).

A key set to null is null (the task's meaning of null, its default for most options). A dict is replaced whole
deliberately: given whole on the command line (`--model.task_options '{monitor: loss}'`, jsonargparse's own
reading), or set to null in a piece (`task_options: null`), after which keys start from nothing.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import ActionConfigFile, Namespace


def merge_dicts(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """`earlier` updated by `later`, key by key; a dict inside both merges the same way."""
    merged = dict(earlier)
    for key, value in later.items():
        before = merged.get(key)
        merged[key] = merge_dicts(before, value) if isinstance(before, dict) and isinstance(value, dict) else value
    return merged


def _same_classes(before: Namespace, after: Namespace, key: str) -> bool:
    """Whether every subclass spec enclosing `key` has the same class_path before and after: when a piece changes
    a class, jsonargparse drops the old class's settings on purpose, and so does the merge."""
    parts = key.split(".")
    for end in range(1, len(parts)):
        prefix = ".".join(parts[:end])
        if before.get(f"{prefix}.class_path") != after.get(f"{prefix}.class_path"):
            return False
    return True


def merge_dict_options(before: Namespace, after: Namespace) -> None:
    """In `after` (the config once a piece is applied), each dict option that was a dict in `before` too becomes
    the two merged; options the piece did not set are equal, so merging them changes nothing."""
    for key, value in list(after.items()):
        earlier = before.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict) and value != earlier \
                and _same_classes(before, after, key):
            after[key] = merge_dicts(earlier, value)


class MergingConfigFile(ActionConfigFile):
    """`--config FILE`: jsonargparse's config-file action, with dict options merged key by key."""

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        before = cfg.clone() if isinstance(cfg, Namespace) else Namespace()
        self.apply_config(parser, cfg, self.dest, values)
        merge_dict_options(before, cfg)
