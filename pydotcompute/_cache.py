"""On-disk cache of compiled artifacts (device kernel modules, emulated-device libraries, PTX).

The cache lives under the user cache directory (``$XDG_CACHE_HOME/pydotcompute``, else
``~/.cache/pydotcompute``); ``PYDOTCOMPUTE_CACHE_DIR`` overrides it. Entries are written to a
temporary file and renamed into place, so concurrent processes never see a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import PyDotComputeError

__all__ = ["cache_dir", "cache_key", "read_cached", "write_cached"]

ENV_VAR = "PYDOTCOMPUTE_CACHE_DIR"


def cache_dir(kind: str) -> Path:
    """Return (and create) the cache directory for one kind of artifact, e.g. ``"cuda"``."""
    base = os.environ.get(ENV_VAR)
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "pydotcompute"
    path = root / kind
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PyDotComputeError(
            f"cannot create the cache directory {path}: {exc}; set {ENV_VAR} to a writable "
            "directory"
        ) from exc
    return path


def cache_key(*parts: Any) -> str:
    """A stable hex digest of ``parts`` (strings, bytes, numbers, or JSON-able structures)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = json.dumps(part, sort_keys=True, default=str).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def read_cached(kind: str, key: str, suffix: str) -> bytes | None:
    """The cached bytes of ``key``, or ``None`` on a miss."""
    path = cache_dir(kind) / f"{key}{suffix}"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_cached(kind: str, key: str, suffix: str, data: bytes) -> Path:
    """Store ``data`` under ``key`` atomically and return its path."""
    directory = cache_dir(kind)
    final = directory / f"{key}{suffix}"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final
