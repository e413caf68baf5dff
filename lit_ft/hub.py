"""What a recipe needs from the Hugging Face Hub, checked before anything loads.

Without network, Transformers and `datasets` retry for tens of seconds and then fail deep inside a fit with a long
traceback. Here the same questions are asked up front, cheaply: can the hub be asked at all (`hub_offline`), is a
hub dataset in the cache (`hub_data_problem`). The backbone's own lookup is `lit_ft.backbone.locate_backbone`.
Used by `lit_ft check` (fatal findings) and by every trainer verb (one-line errors).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lit_ft.errors import UserError

TRUE_VALUES = ("1", "ON", "YES", "TRUE")  # huggingface_hub's spelling of a true environment variable
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROBE_TIMEOUT_S = 3.0


class NotHere(UserError):
    """Something the recipe names that is not on this machine and cannot be fetched: the problem and its fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def hub_offline(data: bool = False) -> str | None:
    """Why the hub cannot be asked (an offline variable set, or no connection to it), or None when it can.

    Args:
        data: Also honour `HF_DATASETS_OFFLINE` (what `datasets` reads).
    """
    names = (*OFFLINE_VARS, "HF_DATASETS_OFFLINE") if data else OFFLINE_VARS
    for name in names:
        if os.environ.get(name, "").upper() in TRUE_VALUES:
            return f"{name}={os.environ[name]}"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    if any(os.environ.get(v) for v in PROXY_VARS):
        return None  # the proxy resolves the hub, not this machine: let the download say
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    return None if _reachable(host, port) else f"{host} cannot be reached from this machine"


@functools.cache
def _reachable(host: str, port: int) -> bool:
    """One quick connection per process: the libraries' own retries take some 20 s per file to give up."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def dataset_cached(name: str) -> bool:
    """Whether `datasets` may load hub dataset `name` offline: its prepared copy or its hub files are cached."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    *namespace, dataset = name.split("/")
    prepared = Path(datasets.config.HF_DATASETS_CACHE) / "___".join([*namespace, camelcase_to_snakecase(dataset)])
    return prepared.is_dir() or (hub_cache() / f"datasets--{name.replace('/', '--')}").is_dir()


def offline_pieces(configs: list[Any]) -> list[str]:
    """The shipped offline data pieces of the given recipe files: `<dir>/offline/<recipe>.yaml` beside each."""
    found = []
    for config in configs:
        given = Path(str(config))
        piece = given.parent / "offline" / given.name
        if given.parent.name != "offline" and piece.is_file():
            found.append(str(piece))
    return found


def hub_data_problem(cfg: Any) -> tuple[str, str] | None:
    """A parsed config's hub dataset (`data.init_args.source.hub`) that cannot load here: not cached, and the hub
    cannot be asked. The fix names the recipe's offline piece where it ships one."""
    source = (cfg.get("data.init_args") or {}).get("source") if cfg.get("data") is not None else None
    name = getattr(source, "hub", None) if source is not None else None
    if not name or name in ("None", "null") or Path(str(name)).expanduser().exists() or dataset_cached(str(name)):
        return None  # a local folder of split files loads like a hub dataset, without the hub
    reason = hub_offline(data=True)
    if reason is None:
        return None
    configs = [c for c in (cfg.get("config") or []) if c is not None]
    pieces = offline_pieces(configs)
    local = ("point data.init_args.source.train/validation/test/predict at local files and set "
             "data.init_args.source.hub null")
    if pieces:
        fix = f"add the recipe's offline data piece: --config {' --config '.join(pieces)} (or {local})"
    elif configs:
        fix = f"{Path(str(configs[0])).name} ships no offline piece (configs/offline/<recipe>.yaml): {local}"
    else:
        fix = local
    return (f"data.init_args.source.hub '{name}' is not in the datasets cache and the hub cannot be asked "
            f"({reason})", fix)


def require_hub_data(cfg: Any) -> None:
    """`hub_data_problem` as a one-line error."""
    problem = hub_data_problem(cfg)
    if problem is not None:
        raise NotHere(*problem)
