"""Small file helpers: atomic writes and JSON lines."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    On any exception the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a file for writing that appears at ``path`` only once fully written."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=False)
        f.write("\n")


def _timeless(obj: Any) -> Any:
    """``obj`` without the keys that time how it was made (``*_seconds``), at any depth."""
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if not str(k).endswith("_seconds")}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def sha256_files(paths: list[Path]) -> str:
    """Hex SHA-256 over the names and contents of ``paths``, in the order given. A ``.json`` file
    counts by its content without the keys that time its making (``*_seconds``, e.g. a codec's
    ``train_seconds``), so the same model trained again has the same digest."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        if p.suffix == ".json":
            try:
                obj = json.loads(p.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
            else:
                h.update(json.dumps(_timeless(obj), sort_keys=True).encode())
                continue
        _update_with_file(h, p)
    return h.hexdigest()


def _update_with_file(h, path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of one file's bytes."""
    import hashlib

    h = hashlib.sha256()
    _update_with_file(h, path)
    return h.hexdigest()


#: Files of a run, model or codec folder that describe how it was made, not what it is.
DESCRIPTIVE_FILES = frozenset({"command.txt", "config.yaml", "run.json", ".done", "metrics.jsonl"})


def folder_digest(folder: str | os.PathLike, recursive: bool = True) -> str:
    """:func:`sha256_files` of a folder's files (relative paths sorted), without
    :data:`DESCRIPTIVE_FILES` and hidden files: two folders with the same model have the same digest."""
    folder = Path(folder)
    files = folder.rglob("*") if recursive else folder.iterdir()
    keep = sorted(p for p in files if p.is_file() and p.name not in DESCRIPTIVE_FILES and not p.name.startswith("."))
    return sha256_files(keep)


def read_json(path: str | os.PathLike) -> Any:
    from rrpo.errors import RrpoError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RrpoError("file not found", path) from None
    except json.JSONDecodeError as e:
        raise RrpoError(f"not valid JSON ({e.msg})", path, e.lineno) from None


def append_jsonl(path: str | os.PathLike, obj: dict) -> None:
    """Append one JSON object as a line (used for metrics.jsonl)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    from rrpo.errors import RrpoError

    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise RrpoError(f"malformed JSON line ({e.msg})", path, i) from None
    except FileNotFoundError:
        raise RrpoError("file not found", path) from None
    return out
