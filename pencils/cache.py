"""On-disk cache for symbolic work (derivations, Gaussian-equivalence forms).

Symbolic derivations are deterministic functions of their inputs, so they are
stored once, keyed by a hash of a canonical description of the input (for sympy
objects: ``sympy.srepr``) and of the cache format version.  A second run loads
the pickled result instead of re-deriving it.

The directory is ``$DSM_CACHE_DIR`` if set, else ``~/.cache/dsm-curves``.
Setting ``DSM_CACHE_DIR`` to the empty string or ``off`` disables the disk
cache (results are then only memoised in-process).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

#: Bump when the pickled layout of any cached object changes.
CACHE_FORMAT = 1

_memory: dict[str, Any] = {}


def cache_dir() -> Path | None:
    """The cache directory, or ``None`` when the disk cache is disabled."""
    env = os.environ.get("DSM_CACHE_DIR")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        return None
    path = Path(env) if env else Path.home() / ".cache" / "dsm-curves"
    return path


def cache_key(namespace: str, description: str) -> str:
    """A file-system safe key for ``description`` inside ``namespace``."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{namespace}\0{description}".encode()).hexdigest()
    return f"{namespace}-{digest[:32]}"


def cached(namespace: str, description: str, compute: Callable[[], Any]) -> Any:
    """Return ``compute()``, memoised in-process and on disk under ``description``.

    ``description`` must determine the result completely (use ``sympy.srepr``
    for sympy input).  Unreadable cache files are ignored and rewritten.
    """
    key = cache_key(namespace, description)
    if key in _memory:
        return _memory[key]
    directory = cache_dir()
    path = directory / f"{key}.pkl" if directory is not None else None
    if path is not None and path.exists():
        try:
            with path.open("rb") as fh:
                value = pickle.load(fh)
            _memory[key] = value
            return value
        except Exception:  # corrupt or stale file: fall through and recompute
            pass
    value = compute()
    _memory[key] = value
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Atomic write: concurrent runs never read a half-written pickle.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home must not break the computation
    return value


def is_cached(namespace: str, description: str) -> bool:
    """Whether ``description`` is already in the memory or disk cache."""
    key = cache_key(namespace, description)
    if key in _memory:
        return True
    directory = cache_dir()
    return directory is not None and (directory / f"{key}.pkl").exists()


def clear_memory() -> None:
    """Forget the in-process memo (the disk cache is kept); used by tests and benchmarks."""
    _memory.clear()
