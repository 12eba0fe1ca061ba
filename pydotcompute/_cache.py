"""On-disk cache of compiled artifacts (device kernel modules, emulated-device libraries, PTX).

The cache lives under the user cache directory (``$XDG_CACHE_HOME/pydotcompute``, else
``~/.cache/pydotcompute``); ``PYDOTCOMPUTE_CACHE_DIR`` overrides it. Entries are written to a
temporary file and renamed into place, so concurrent processes never see a half-written one.

Trust rule: what is loaded from the cache runs as the user (shared libraries, CUBINs, Numba's
pickles), so the cache is used only when nobody else can have written it. :func:`cache_dir`
creates its directories ``0700`` and refuses, with :class:`CacheTrustError`, a cache root or
kind directory that is not owned by the current user or that group or others can write (group
write is allowed for a user-private group, as umask 002 systems make); :func:`read_cached` and
:func:`cached_path` refuse such a file the same way. Every user of the cache (Numba's too,
through ``cache_dir("numba")``) goes through these checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import CacheTrustError, PyDotComputeError

__all__ = [
    "CacheTrustError",
    "cache_dir",
    "cache_key",
    "cache_root",
    "cached_path",
    "check_trusted",
    "read_cached",
    "write_cached",
]

ENV_VAR = "PYDOTCOMPUTE_CACHE_DIR"
_UNSAFE = stat.S_IWGRP | stat.S_IWOTH


def _uid() -> int | None:
    """The current user's id (``None`` where the platform has no POSIX owners)."""
    return os.getuid() if hasattr(os, "getuid") else None


def _who(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _private_group(gid: int, uid: int) -> bool:
    """Whether ``gid`` is ``uid``'s own user-private group (umask 002 systems): no one else."""
    try:
        import grp
        import pwd

        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    others = [m for m in group.gr_mem if m != user.pw_name]
    return gid == user.pw_gid and group.gr_name == user.pw_name and not others


def check_trusted(path: Path) -> None:
    """Refuse ``path`` unless the current user owns it and nobody else can write it.

    Raises
    ------
    CacheTrustError
        ``path`` belongs to another user, or group or others can write it.
    """
    me = _uid()
    if me is None:
        return
    info = path.stat()
    what = "cache directory" if stat.S_ISDIR(info.st_mode) else "cached file"
    fix = (
        f"set {ENV_VAR} to a directory of your own"
        if what == "cache directory"
        else f"delete it (rm {path}) and it is rebuilt"
    )
    if info.st_uid != me:
        raise CacheTrustError(
            f"the {what} {path} belongs to {_who(info.st_uid)}, not to you ({_who(me)}): "
            f"what another user can write is never loaded (it would run as you); {fix}"
        )
    unsafe = info.st_mode & _UNSAFE
    if unsafe == stat.S_IWGRP and _private_group(info.st_gid, me):
        unsafe = 0  # the group is the user alone
    if unsafe:
        who = " and ".join(
            name
            for bit, name in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "all users"))
            if unsafe & bit
        )
        chmod = f"chmod 700 {path}" if what == "cache directory" else f"chmod 600 {path}"
        raise CacheTrustError(
            f"the {what} {path} is writable by {who} (mode {stat.S_IMODE(info.st_mode):o}): "
            f"what another user can write is never loaded (it would run as you); run {chmod} "
            f"(and delete anything in it you did not build), or {fix}"
        )


def cache_root() -> Path:
    """The cache's root folder (not created): ``$PYDOTCOMPUTE_CACHE_DIR`` or the user's."""
    base = os.environ.get(ENV_VAR)
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pydotcompute"


def cache_dir(kind: str) -> Path:
    """Return (and create, ``0700``) the checked cache directory of one kind of artifact.

    ``kind`` is ``"cuda"``, ``"emulated"``, ``"ptx"``, ``"cpu"`` or ``"numba"`` (Numba's own
    cache, so that it lives under the same checked directory).

    Raises
    ------
    CacheTrustError
        The root or the kind directory is another user's, or writable by group or others.
    PyDotComputeError
        The directory cannot be created.
    """
    root = cache_root()
    path = root / kind
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        for folder in (root, path):
            folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise PyDotComputeError(
            f"cannot create the cache directory {path}: {exc}; set {ENV_VAR} to a writable "
            "directory"
        ) from exc
    check_trusted(root)
    check_trusted(path)
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


def cached_path(kind: str, key: str, suffix: str) -> Path | None:
    """The checked path of the cached ``key`` (to load it from disk), or ``None`` on a miss.

    Raises
    ------
    CacheTrustError
        The file (or its directory) could have been written by another user.
    """
    path = cache_dir(kind) / f"{key}{suffix}"
    if not path.exists():
        return None
    check_trusted(path)
    return path


def read_cached(kind: str, key: str, suffix: str) -> bytes | None:
    """The cached bytes of ``key``, or ``None`` on a miss (checked like :func:`cached_path`)."""
    path = cached_path(kind, key, suffix)
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_cached(kind: str, key: str, suffix: str, data: bytes) -> Path:
    """Store ``data`` under ``key`` atomically (mode ``0600``) and return its path."""
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
