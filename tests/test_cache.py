"""The derivation cache cannot go stale: keys carry the package version and the deriving
code's fingerprint; wrong or unreadable entries are rebuilt with a warning; an unwritable
folder warns once and runs uncached."""
from __future__ import annotations

import pickle
import warnings

import pytest

from pencils import cache


class Counter:
    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def test_second_run_loads_from_disk(disk):
    compute = Counter({"system": [1, 2, 3]})
    assert cache.cached("t", "x", compute, expected=dict) == {"system": [1, 2, 3]}
    cache.clear_memory()  # a new process
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.cached("t", "x", compute, expected=dict) == {"system": [1, 2, 3]}
    assert compute.calls == 1 and len(list(disk.glob("t-*.pkl"))) == 1


@pytest.mark.parametrize("what", ["_version", "_fingerprint"])
def test_a_new_version_or_edited_code_never_loads_a_stale_entry(disk, monkeypatch, what):
    old = Counter("derived by the old code")
    cache.cached("t", "x", old)
    cache.clear_memory()
    if what == "_version":
        monkeypatch.setattr(cache, "_version", cache.package_version() + "-changed")
    else:
        monkeypatch.setattr(cache, "_fingerprints", {cache.DERIVING_PACKAGES: cache.code_fingerprint() + "-changed"})
    new = Counter("derived by the new code")
    assert cache.cached("t", "x", new) == "derived by the new code"
    assert new.calls == 1 and not cache.is_cached("t", "y")


def test_code_fingerprint_covers_the_deriving_packages(monkeypatch):
    monkeypatch.setattr(cache, "_fingerprints", {})
    first = cache.code_fingerprint()
    assert len(first) == 64 and cache.code_fingerprint() == first
    assert cache.code_fingerprint(("pencils", "derivations/derived.py")) not in (first, cache.code_fingerprint(("pencils",)))
    monkeypatch.setattr(cache, "DERIVING_PACKAGES", ("pencils", "derivations"))
    assert cache.code_fingerprint() != first  # numerics/ is part of it


def test_a_symbolic_step_keeps_its_entry_when_other_packages_change(disk, monkeypatch):
    """``code=("pencils",)``: an edit of numerics/ or derivations/ keeps the entry; an edit of
    pencils/ does not."""
    first = Counter("derived")
    cache.cached("t", "sym", first, code=("pencils",))
    cache.clear_memory()
    pencils_only = cache.code_fingerprint(("pencils",))
    monkeypatch.setattr(cache, "_fingerprints", {("pencils",): pencils_only,
                                                 cache.DERIVING_PACKAGES: "numerics edited"})
    again = Counter("derived again")
    assert cache.cached("t", "sym", again, code=("pencils",)) == "derived" and again.calls == 0
    assert not cache.is_cached("t", "sym")  # the default key covers every package
    cache.clear_memory()
    monkeypatch.setattr(cache, "_fingerprints", {("pencils",): "pencils edited"})
    assert cache.cached("t", "sym", again, code=("pencils",)) == "derived again" and again.calls == 1


def _entry(disk, namespace, description):
    return disk / f"{cache.cache_key(namespace, description)}.pkl"


@pytest.mark.parametrize("payload, message", [
    (pickle.dumps(["not", "an", "envelope"]), "not a cache envelope"),
    (pickle.dumps(dict(key="another", type="builtins.int", value=1)), "belongs to another key"),
    (b"\x80\x05garbage", "unreadable"),
])
def test_wrong_or_unreadable_entry_is_discarded_and_rebuilt(disk, payload, message):
    path = _entry(disk, "t", "x")
    disk.mkdir(parents=True)
    path.write_bytes(payload)
    compute = Counter(42)
    with pytest.warns(cache.CacheWarning, match=message):
        assert cache.cached("t", "x", compute) == 42
    assert compute.calls == 1
    cache.clear_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry loads cleanly
        assert cache.cached("t", "x", compute) == 42
    assert compute.calls == 1


def test_entry_of_the_wrong_type_is_rebuilt(disk):
    path = _entry(disk, "t", "x")
    disk.mkdir(parents=True)
    path.write_bytes(pickle.dumps(dict(key=path.stem, type="builtins.str", value="a string")))
    compute = Counter((1.0, 2.0))
    with pytest.warns(cache.CacheWarning, match="holds a str, expected tuple"):
        assert cache.cached("t", "x", compute, expected=tuple) == (1.0, 2.0)
    cache.clear_memory()
    with pytest.warns(cache.CacheWarning, match="fails its check"):
        assert cache.cached("t", "x", Counter((3.0,)), expected=lambda v: len(v) == 1) == (3.0,)
    with pytest.raises(TypeError, match="computed value holds a list"):
        cache.cached("t", "z", lambda: [1], expected=tuple)


def test_unwritable_folder_warns_once_and_runs_uncached(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache folder should be")
    folder = blocker / "cache"
    monkeypatch.setenv("DSM_CACHE_DIR", str(folder))
    monkeypatch.setattr(cache, "_unwritable", set())
    cache.clear_memory()
    with pytest.warns(cache.CacheWarning) as record:
        assert cache.cached("t", "a", Counter(1)) == 1
        assert cache.cached("t", "b", Counter(2)) == 2
        assert cache.cached("t", "c", Counter(3)) == 3
    assert len(record) == 1 and "cannot be written" in str(record[0].message)
    cache.clear_memory()
    compute = Counter(1)
    assert cache.cached("t", "a", compute) == 1 and compute.calls == 1  # nothing was stored
    cache.clear_memory()
