"""On-disk cache for symbolic work (derivations, Gaussian-equivalence forms).

Symbolic derivations are deterministic functions of their inputs *and of the code that
derives them*, so an entry is keyed by a hash of

* a canonical description of the input (for sympy objects: ``sympy.srepr``),
* the cache format version :data:`CACHE_FORMAT`,
* the installed package version (``importlib.metadata``; :data:`FALLBACK_VERSION` when
  the distribution is not installed),
* a fingerprint of the deriving code: the SHA-256 of the source files of the packages
  that compute the value (:func:`code_fingerprint`, computed once per process): by default
  ``pencils``, ``derivations`` and ``numerics``; a symbolic step names fewer (``code=``: the
  pencils' own steps ``("pencils",)``, the derived models ``("pencils", "derivations")``), so
  that an edit of the numerics keeps an hour-long derivation.

An upgrade or any edit of the deriving code therefore never loads a stale system.
A second run of the same code loads the pickled result instead of re-deriving it.

Each file holds an envelope ``{"key", "type", "value"}``.  An entry that cannot be read,
whose envelope or key does not match, or whose value fails the caller's ``expected``
check (a type, a tuple of types or a predicate) is discarded and rebuilt with a
:class:`CacheWarning`.  A cache folder that cannot be written gives one
:class:`CacheWarning` per folder and process, and the work runs uncached (memoised
in-process only).

The directory is ``$DSM_CACHE_DIR`` if set, else ``~/.cache/dsm-curves``.
Setting ``DSM_CACHE_DIR`` to the empty string or ``off`` disables the disk
cache (results are then only memoised in-process).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

#: Bump when the pickled layout of any cached object changes (2: envelope with key and type).
CACHE_FORMAT = 2
#: Version used in the keys when the ``dsm-curves`` distribution metadata is not installed.
FALLBACK_VERSION = "0+unknown"
#: Packages whose source determines the derived objects (their files are hashed into the keys).
DERIVING_PACKAGES = ("pencils", "derivations", "numerics")

_memory: dict[str, Any] = {}
#: ``packages -> SHA-256`` of their source (:func:`code_fingerprint`).
_fingerprints: dict[tuple, str] = {}
_version: str | None = None
_unwritable: set[str] = set()


class CacheWarning(UserWarning):
    """A cache entry was discarded, or the cache folder cannot be written."""


def package_version() -> str:
    """The installed ``dsm-curves`` version (``FALLBACK_VERSION`` if not installed); cached."""
    global _version
    if _version is None:
        from importlib import metadata

        try:
            _version = metadata.version("dsm-curves")
        except metadata.PackageNotFoundError:
            _version = FALLBACK_VERSION
    return _version


def code_fingerprint(packages: tuple | None = None) -> str:
    """SHA-256 over the ``.py`` files of ``packages`` (default :data:`DERIVING_PACKAGES`; paths
    and contents; an entry ending in ``.py`` is one file, relative to the project root); cached
    per tuple of packages.

    Computed once per process (a few milliseconds: the files are read once).
    """
    packages = tuple(DERIVING_PACKAGES if packages is None else packages)
    if packages not in _fingerprints:
        root = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for package in packages:
            base = root / package
            for path in ([base] if package.endswith(".py") else sorted(base.rglob("*.py"))):
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        _fingerprints[packages] = digest.hexdigest()
    return _fingerprints[packages]


def cache_dir() -> Path | None:
    """The cache directory, or ``None`` when the disk cache is disabled."""
    env = os.environ.get("DSM_CACHE_DIR")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        return None
    path = Path(env) if env else Path.home() / ".cache" / "dsm-curves"
    return path


def cache_key(namespace: str, description: str, code: tuple | None = None) -> str:
    """A file-system safe key for ``description`` inside ``namespace``.

    The key changes with :data:`CACHE_FORMAT`, the package version and the deriving
    code (:func:`code_fingerprint` of the packages ``code``, default all of
    :data:`DERIVING_PACKAGES`).
    """
    text = f"{CACHE_FORMAT}\0{package_version()}\0{code_fingerprint(code)}\0{namespace}\0{description}"
    return f"{namespace}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _type_name(value) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _check(value, expected) -> str | None:
    """Why ``value`` is not what the caller expects (``None`` when it is)."""
    if expected is None:
        return None
    if isinstance(expected, type) or (isinstance(expected, tuple) and all(isinstance(t, type) for t in expected)):
        if isinstance(value, expected):
            return None
        names = ", ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        return f"holds a {type(value).__name__}, expected {names}"
    if callable(expected):
        try:
            ok = bool(expected(value))
        except Exception as exc:  # a validator that crashes on the value rejects it
            return f"fails its check ({type(exc).__name__}: {exc})"
        return None if ok else "fails its check"
    raise ValueError(f"expected must be a type, a tuple of types or a predicate, got {expected!r}")


def _load(path: Path, key: str, expected):
    """``(True, value)`` for a good entry, ``(False, None)`` otherwise (bad entries are removed)."""
    if not path.is_file():
        return False, None
    try:
        with path.open("rb") as fh:
            envelope = pickle.load(fh)
    except FileNotFoundError:  # removed by a concurrent run
        return False, None
    except Exception as exc:  # truncated, corrupt, or pickled by code that no longer exists
        problem = f"is unreadable ({type(exc).__name__}: {exc})"
    else:
        if not (isinstance(envelope, dict) and envelope.keys() == {"key", "type", "value"}):
            problem = f"holds a {type(envelope).__name__}, not a cache envelope"
        elif envelope["key"] != key:
            problem = f"belongs to another key ({envelope['key']!r})"
        else:
            problem = _check(envelope["value"], expected)
            if problem is None:
                return True, envelope["value"]
    warnings.warn(f"cache entry {path} {problem}: discarded and rebuilt", CacheWarning, stacklevel=4)
    try:
        path.unlink()
    except OSError:
        pass
    return False, None


def _store(path: Path, key: str, value) -> None:
    folder = str(path.parent)
    if folder in _unwritable:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic write: concurrent runs never read a half-written pickle.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(dict(key=key, type=_type_name(value), value=value), fh,
                            protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        _unwritable.add(folder)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        warnings.warn(f"cache folder {folder} cannot be written ({reason}); running without the disk cache "
                      "(set DSM_CACHE_DIR to a writable folder, or to 'off')", CacheWarning, stacklevel=4)


def cached(namespace: str, description: str, compute: Callable[[], Any], expected=None,
           code: tuple | None = None) -> Any:
    """Return ``compute()``, memoised in-process and on disk under ``description``.

    ``description`` must determine the result completely given the code (use
    ``sympy.srepr`` for sympy input); the package version and the deriving code's
    fingerprint are added to the key.  ``expected`` (optional): a type, a tuple of types
    or a predicate that a loaded value must satisfy; an entry that fails it, or that
    cannot be read, is discarded and rebuilt with a :class:`CacheWarning`.  A cache
    folder that cannot be written gives one :class:`CacheWarning` and the result is
    only memoised in-process.  ``code``: the packages whose source ``compute`` runs (default
    all of :data:`DERIVING_PACKAGES`); a symbolic step of ``pencils`` names ``("pencils",)``,
    so that an edit of the numerics does not re-derive an hour-long system.

    >>> import os
    >>> os.environ["DSM_CACHE_DIR"], old = "off", os.environ.get("DSM_CACHE_DIR")
    >>> cached("doctest", "one plus one", lambda: 1 + 1, expected=int)
    2
    >>> _ = os.environ.pop("DSM_CACHE_DIR") if old is None else os.environ.update(DSM_CACHE_DIR=old)
    """
    key = cache_key(namespace, description, code)
    if key in _memory:
        return _memory[key]
    directory = cache_dir()
    path = directory / f"{key}.pkl" if directory is not None else None
    if path is not None:
        ok, value = _load(path, key, expected)
        if ok:
            _memory[key] = value
            return value
    value = compute()
    problem = _check(value, expected)
    if problem is not None:
        raise TypeError(f"cached({namespace!r}): the computed value {problem}")
    _memory[key] = value
    if path is not None:
        _store(path, key, value)
    return value


def is_cached(namespace: str, description: str, code: tuple | None = None) -> bool:
    """Whether ``description`` is already in the memory or disk cache (for this code version)."""
    key = cache_key(namespace, description, code)
    if key in _memory:
        return True
    directory = cache_dir()
    return directory is not None and (directory / f"{key}.pkl").exists()


def clear_memory() -> None:
    """Forget the in-process memo (the disk cache is kept); used by tests and benchmarks."""
    _memory.clear()
