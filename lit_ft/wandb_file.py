"""Reads a W&B offline `.wandb` run file: a LevelDB-style log of `wandb_internal_pb2.Record` messages.

lit_ft reads what an offline run really holds on disk (to continue a resumed run without repeating its rows; the
tests read logged metrics back). A file cut short by a killed writer ends at its last complete record.

Layout: a 7-byte header (b":W&B", magic 0xBEE1 little-endian, version), then 32 KiB blocks of chunks, each
with a 7-byte header (crc32 uint32, length uint16, type uint8: 1 full, 2 first, 3 middle, 4 last).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7


def records(path: str | Path) -> list[Any]:
    """Every complete record of the file; ValueError for a file that is not a W&B run file."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        if len(chunk) < length:  # cut short by a killed writer
            break
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()  # type: ignore[attr-defined]
            try:
                record.ParseFromString(pending)
            except DecodeError:
                break
            out.append(record)
            pending = b""
    return out


def history(path: str | Path) -> list[dict[str, Any]]:
    """Every logged history row as {key: value}."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
    return rows


def config(path: str | Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "config":
            found.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return found
