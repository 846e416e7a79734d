"""Integrity of the on-disk caches (issue 18, reliability): a compiled library is used only
if it was built from its own kernel's source, a corrupt library is rebuilt once, and a
corrupt or half-written derivation pickle is recomputed, never returned.

The kernel cases run in fresh processes: within one process ``dlopen`` hands back a
library already loaded under the same path, so only a new process sees the file on disk.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from numerics.kernel import kernel_enabled
from pencils import cache

ROOT = Path(__file__).resolve().parent.parent

#: Two Marchenko--Pastur systems with the same counts (2 parameters, 1 output, 1 core
#: unknown) but different ridges (lam and 3 lam): each library answers the other's
#: question with a plausible, converged, wrong number.
_TWO_SYSTEMS = r'''
import json, sys, warnings
import sympy
from pencils.expr import D, Space, gaussian, inverse, trace
from pencils.freeprob import equations
from pencils.reduce import reduce_systems
from numerics.reduced import compile_reduced
g, lam = sympy.symbols("gamma lam", positive=True)
X = gaussian("X", Space("n", 1 / g), D)
out = {"warnings": []}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name, c in (("a", 1), ("b", 3)):
        solver = compile_reduced(reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + c * lam)))}),
                                 key="integrity-" + name)
        kernel = solver.solve(dict(gamma=0.5, lam=[0.1, 1.0]), throw=False, backend="kernel")
        ref = solver.solve(dict(gamma=0.5, lam=[0.1, 1.0]), throw=False, backend="numpy")
        out[name] = dict(kernel=kernel.values["mp"].tolist(), numpy=ref.values["mp"].tolist(),
                         converged=kernel.converged.tolist(), source=str(solver._kernel().source))
out["warnings"] = [f"{type(w.message).__name__}: {w.message}" for w in caught]
print(json.dumps(out))
'''

kernel_only = pytest.mark.skipif(not kernel_enabled(), reason="no C++ compiler, or DSM_KERNEL=numpy")


def _run(folder: Path, **extra) -> dict:
    env = dict(os.environ, DSM_CACHE_DIR=str(folder), PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", **extra)
    env.pop("DSM_KERNEL", None)
    proc = subprocess.run([sys.executable, "-c", _TWO_SYSTEMS], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _library(out: dict, name: str) -> Path:
    """The double-precision library of system ``name`` (named after its source file)."""
    src = Path(out[name]["source"])
    (lib,) = [p for p in src.parent.glob(f"{src.stem}-double-*.so")]
    return lib


def _correct(out: dict) -> bool:
    return all(out[s]["kernel"] == out[s]["numpy"] and all(out[s]["converged"]) for s in "ab")


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> tuple:
    """A cache folder holding both kernels, built once for the module; each test works on a copy."""
    folder = tmp_path_factory.mktemp("kernels-warm")
    out = _run(folder)
    assert _correct(out) and out["warnings"] == []
    assert out["a"]["kernel"] != out["b"]["kernel"]  # the two systems really differ
    return folder, out


@pytest.fixture
def folder(warm, tmp_path) -> tuple:
    copy = tmp_path / "cache"
    shutil.copytree(warm[0], copy)
    rel = {s: Path(warm[1][s]["source"]).relative_to(warm[0]) for s in "ab"}
    return copy, {s: dict(warm[1][s], source=str(copy / rel[s])) for s in "ab"}


@kernel_only
def test_a_library_of_another_system_is_rejected_and_rebuilt(folder):
    """The reported defect: b's library replaced by a's (same counts) gave a's numbers for
    b with converged=True.  The digest compiled into the library differs from that of b's
    source: one KernelWarning, a rebuild, b's own numbers; the next process is silent."""
    path, out = folder
    shutil.copyfile(_library(out, "a"), _library(out, "b"))
    first = _run(path)
    assert _correct(first)
    assert len(first["warnings"]) == 1 and "built from another source" in first["warnings"][0]
    assert first["warnings"][0].startswith("KernelWarning")
    assert _run(path)["warnings"] == []


@kernel_only
@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped", "empty"])
def test_a_corrupt_library_is_rebuilt_once(folder, damage):
    """A library that cannot be loaded gave a warning and the slow numpy path in every later
    run (a truncated one killed the process with SIGBUS inside dlopen); now its seal is
    checked before dlopen, and it is rebuilt (atomically) in the run that finds it, and the next process
    loads the new file without a warning."""
    path, out = folder
    lib = _library(out, "b")
    data = lib.read_bytes()
    middle = len(data) // 2
    damaged = {"garbage": b"\x7fELF" + os.urandom(4096), "truncated": data[:middle], "empty": b"",
               "flipped": data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]}[damage]
    lib.write_bytes(damaged)
    first = _run(path)
    assert _correct(first)
    assert len(first["warnings"]) == 1 and "rebuilding it" in first["warnings"][0]
    fresh = lib.read_bytes()  # replaced by a fresh build of the same source
    assert fresh != damaged and abs(len(fresh) - len(data)) < 1000
    second = _run(path)
    assert second["warnings"] == [] and _correct(second)
    assert not [p for p in (path / "kernels").iterdir() if p.name.startswith(".")]  # no temporary left


@kernel_only
def test_a_build_killed_with_its_process_leaves_nothing_behind(folder):
    """A process killed while compiling leaves its digest stub and its unfinished library
    (tens of MB for the largest kernels).  The next build of that library, holding its lock,
    removes them; the temporary files of another build (another digest) are left alone."""
    path, out = folder
    lib = _library(out, "b")
    stem, digest16 = lib.stem.rsplit("-", 1)
    lib.unlink()
    killed = [lib.parent / f".{stem}-{digest16}-x1y2z3.cpp", lib.parent / f".{stem}-{digest16}-a9b8c7.so"]
    other = lib.parent / f".{stem}-{'0' * 16}-q1w2e3.so"
    for f in (*killed, other):
        f.write_bytes(b"half a build")
    again = _run(path)
    assert _correct(again) and again["warnings"] == []
    assert lib.is_file() and not any(f.exists() for f in killed)
    assert other.read_bytes() == b"half a build"


@kernel_only
def test_a_compiler_that_fails_at_the_default_level_gives_an_O0_library(tmp_path):
    """A compiler killed at -O1 or -O2 (out of memory: the 8.8 MB two-spike kernel takes over
    10 GB at -O1) used to leave the numpy solver, orders of magnitude slower.  The build is
    done again at -O0 (the same numbers), with one warning per library; the failure is
    remembered, so the next process neither warns nor runs the compiler again."""
    real = shutil.which("c++") or shutil.which("g++")
    calls = tmp_path / "calls.txt"
    cxx = tmp_path / "oom-c++"
    cxx.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase " $* " in *" -O0 "*) exec {real} "$@";; esac\n'
                   'echo "c++: fatal error: Killed signal terminated program cc1plus" >&2\nexit 1\n')
    cxx.chmod(0o755)
    folder = tmp_path / "cache"
    first = _run(folder, CXX=str(cxx))
    assert _correct(first)
    assert len(first["warnings"]) == 2
    assert all(w.startswith("KernelWarning") and "at -O0 instead" in w and "Killed" in w for w in first["warnings"])
    runs = calls.read_text().splitlines()
    assert len(runs) == 4 and sum(" -O0 " in f" {r} " for r in runs) == 2
    assert len(list((folder / "kernels").glob("*.failed"))) == 2
    second = _run(folder, CXX=str(cxx))
    assert _correct(second) and second["warnings"] == []
    assert calls.read_text().splitlines() == runs  # no compiler run at all


@kernel_only
def test_a_source_of_another_kernel_is_regenerated(folder):
    """b's source file replaced by a's: its first line names kernel a, so the source is
    regenerated (and then the library, whose digest no longer matches)."""
    path, out = folder
    shutil.copyfile(out["a"]["source"], out["b"]["source"])
    first = _run(path)
    assert _correct(first)
    assert any("written for another kernel" in w for w in first["warnings"])
    assert _run(path)["warnings"] == []


#: The two systems again after an edit of the deriving code (another code fingerprint renames
#: every kernel), counting the compiler runs.
_EDITED = r'''
import pencils.cache, numerics.kernel
pencils.cache.code_fingerprint = lambda packages=None: "an edited version of the code"
_compile, compiles = numerics.kernel._compile, []
numerics.kernel._compile = lambda *a: compiles.append(a[1]) or _compile(*a)
''' + _TWO_SYSTEMS.replace('print(json.dumps(out))', 'out["compiles"] = compiles\nprint(json.dumps(out))')


@kernel_only
def test_a_renamed_kernel_keeps_the_library_of_its_code(folder):
    """An edit of the deriving code renames every kernel (the cache key holds the code's
    fingerprint).  The same generated code then links the library it has, with no compile
    (the spiked systems take minutes to an hour); the numbers are those of each system."""
    path, out = folder
    env = dict(os.environ, DSM_CACHE_DIR=str(path), PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    env.pop("DSM_KERNEL", None)
    proc = subprocess.run([sys.executable, "-c", _EDITED], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    edited = json.loads(proc.stdout.strip().splitlines()[-1])
    assert _correct(edited) and edited["warnings"] == [] and edited["compiles"] == []
    for s in "ab":
        assert edited[s]["source"] != out[s]["source"]          # renamed ...
        assert _library(edited, s).samefile(_library(out, s))   # ... and linked to the library it had
        assert edited[s]["kernel"] == out[s]["kernel"]


#: The two systems in a process that counts its compiler runs.
_COUNTED = r'''
import numerics.kernel
_compile, compiles = numerics.kernel._compile, []
numerics.kernel._compile = lambda *a: compiles.append(a[1]) or _compile(*a)
''' + _TWO_SYSTEMS.replace('print(json.dumps(out))', 'out["compiles"] = compiles\nprint(json.dumps(out))')


@kernel_only
def test_processes_that_need_one_library_compile_it_once(folder):
    """Two processes start together on a cache whose libraries are gone.  Each library is
    compiled once: the process that finds another one compiling it waits for that build
    (numerics.kernel._build_lock) and loads it.  Before, both compiled it side by side (a
    16 MB kernel: half an hour and 4 GB per compiler)."""
    path, out = folder
    for s in "ab":
        _library(out, s).unlink()
    env = dict(os.environ, DSM_CACHE_DIR=str(path), PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    env.pop("DSM_KERNEL", None)
    procs = [subprocess.Popen([sys.executable, "-c", _COUNTED], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert all(_correct(r) and r["warnings"] == [] for r in results)
    compiled = sorted(name for r in results for name in r["compiles"])
    assert compiled == sorted(Path(out[s]["source"]).stem for s in "ab")
    for s in "ab":
        assert results[0][s]["kernel"] == results[1][s]["kernel"] == out[s]["kernel"]


def test_the_build_digest_covers_source_compiler_and_every_flag():
    """Whatever the library is built from changes its digest (and so its file name and the
    value it must export): one byte of source, the compiler, any flag or their order."""
    from numerics.kernel import build_digest

    base = build_digest(b"int x;", "/usr/bin/c++", ("-O2", "-DKERNEL_DOUBLE"))
    assert base == build_digest(b"int x;", "/usr/bin/c++", ("-O2", "-DKERNEL_DOUBLE"))
    others = [build_digest(b"int y;", "/usr/bin/c++", ("-O2", "-DKERNEL_DOUBLE")),
              build_digest(b"int x;", "/usr/bin/clang++", ("-O2", "-DKERNEL_DOUBLE")),
              build_digest(b"int x;", "/usr/bin/c++", ("-O2", "-DKERNEL_DD")),
              build_digest(b"int x;", "/usr/bin/c++", ("-DKERNEL_DOUBLE", "-O2")),
              build_digest(b"int x;", "/usr/bin/c++", ("-O2", "-DKERNEL_DOUBLE", "-mfma"))]
    assert len({base, *others}) == 6


# -- derivation pickles -----------------------------------------------------------------


def test_every_truncation_of_an_entry_is_recomputed_and_overwritten(disk):
    """A real entry cut at any length (a crash mid-copy, a full disk) is discarded with a
    CacheWarning, recomputed and stored again whole; it never loads as a partial value."""
    value = {"system": list(range(50)), "name": "x" * 40}
    assert cache.cached("t", "trunc", lambda: value) == value
    path = disk / f"{cache.cache_key('t', 'trunc')}.pkl"
    whole = path.read_bytes()
    for cut in range(0, len(whole), 7):
        path.write_bytes(whole[:cut])
        cache.clear_memory()
        calls = []
        with pytest.warns(cache.CacheWarning, match="unreadable|not a cache envelope"):
            got = cache.cached("t", "trunc", lambda: calls.append(1) or value)
        assert got == value and calls == [1], cut
        assert path.read_bytes() == whole, cut  # overwritten with the whole entry


def test_garbage_bytes_are_recomputed(disk):
    """Random bytes where a pickle should be: recomputed, no exception escapes."""
    import random

    rng = random.Random(5)
    path = disk / f"{cache.cache_key('t', 'garbage')}.pkl"
    disk.mkdir(parents=True)
    for _ in range(30):
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        cache.clear_memory()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cache.CacheWarning)
            assert cache.cached("t", "garbage", lambda: (1, 2)) == (1, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cache.clear_memory()
            assert cache.cached("t", "garbage", lambda: None) == (1, 2)  # stored whole


class _Explodes:
    """Pickles half of itself, then fails: a writer that dies mid-write."""

    def __reduce__(self):
        raise pickle.PicklingError("died mid-write")


def test_a_writer_that_fails_mid_write_leaves_the_old_entry(disk):
    """The pickle goes to a temporary file renamed into place: a failed dump leaves the
    previous entry intact and no temporary behind."""
    assert cache.cached("t", "mid", lambda: [1, 2, 3]) == [1, 2, 3]
    path = disk / f"{cache.cache_key('t', 'mid')}.pkl"
    before = path.read_bytes()
    with pytest.warns(cache.CacheWarning, match="cannot be written"):
        cache._store(path, path.stem, [1, _Explodes()])
    assert path.read_bytes() == before
    assert [p.name for p in disk.iterdir()] == [path.name]
    cache._unwritable.discard(str(disk))


def _writer(folder: str, seed: int, rounds: int) -> list:
    """One concurrent process: writes and reads the same key many times; returns what it read."""
    os.environ["DSM_CACHE_DIR"] = folder
    seen = []
    for i in range(rounds):
        cache.clear_memory()
        value = [seed] * 20000  # large enough that a write takes several system calls
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a half-written file would be a CacheWarning here
            got = cache.cached("t", "shared", lambda: value)
        seen.append((len(got), len(set(got))))
        cache._store(Path(folder) / f"{cache.cache_key('t', 'shared')}.pkl", cache.cache_key("t", "shared"), value)
    return seen


def test_concurrent_writers_never_leave_a_half_written_file(tmp_path):
    """Four processes store and load one key at once: every load is a whole entry (no
    CacheWarning, 20000 equal items), and only the final file remains."""
    folder = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_writer, [(str(folder), s, 25) for s in range(4)])
    assert all(r == (20000, 1) for rs in results for r in rs)
    assert [p.suffix for p in folder.iterdir()] == [".pkl"]
    env = pickle.loads(next(folder.iterdir()).read_bytes())
    assert len(env["value"]) == 20000 and len(set(env["value"])) == 1


def test_a_derived_model_is_keyed_by_the_code_that_derives_it():
    """A model described by its expressions: the reduced system by the engine and
    ``derivations/derived.py``, the program and kernel by those and ``numerics`` (an edit
    elsewhere in ``derivations`` renames nothing).  A factory under a cheap name: every deriving
    package, since the factory's own code decides the expressions."""
    from derivations.derived import DERIVING_CODE, KERNEL_CODE, DerivedModel
    from derivations.theory import dsm_model
    from pencils.cache import cache_key

    described = DerivedModel(outputs={"x": None})
    assert described._code(DERIVING_CODE) == DERIVING_CODE and described._code(KERNEL_CODE) == KERNEL_CODE
    assert "derivations" not in KERNEL_CODE and "numerics" in KERNEL_CODE
    assert dsm_model("1")._code(KERNEL_CODE) is None
    assert cache_key("kernel", "k", KERNEL_CODE) != cache_key("kernel", "k")
