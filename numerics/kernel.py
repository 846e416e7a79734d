"""Build, load and call the compiled kernel of a reduced system: the fast path of
:class:`numerics.reduced.ReducedSolver`.

The source is written by :func:`numerics.codegen.cxx.kernel_source` (scalar C++ templates
in the number type ``T``, one function per segment, core map and Jacobian, and the
per-point driver of ``numerics/codegen/*.hpp``); this module finds the C++ compiler, keeps
source and libraries in the disk cache, and calls them through :mod:`ctypes`.  Each point
is solved on its own from its own cold start, so its value and flag never depend on the
other points of the call.

One library per number type, each built on first use:

* ``double``: the algorithm of the numpy stage solver (:mod:`numerics.stages`), the same
  operations in the same order (``-ffp-contract=off``: no fused multiply-adds, no
  reassociation) except integer powers, which are products here;
* ``dd`` (double-double, about 32 significant digits): the refinement of points whose
  double-precision rounding estimate is too large; Newton restarts from the
  double-precision core (Dekker 1971; Hida, Li & Bailey 2001);
* ``complex``: spectral arguments off the real axis (:mod:`derivations.training_time`).

The attractivity test of a root (spectral radius of ``(I + f')/2`` below 1) runs the
Schur--Cohn recursion on the characteristic polynomial (Faddeev--LeVerrier), free of LAPACK.

The source file is named by the cache key of its system, the compiler flags and the digest
of the hand-written C++ (a change of the deriving code gives new files), and its first line
names that key; each library by the SHA-256 of the rest of its source, compiler and flags
(:func:`build_digest`; a renamed kernel whose generated code did not change links the library
it already has instead of compiling it again), which it also exports (:data:`DIGEST_SYMBOL`), and it carries a seal
(the hash of its own bytes).  A fresh process reads the source, checks the seal and the
digest, and loads the library without sympy; a library that is damaged or was built from
another source is rebuilt once, with a :class:`KernelWarning`, never loaded.  The optimisation
level follows the source's size (-O2; -O1 above 2 MB; -O0 above 20 MB, 8 MB for double-double,
where -O1 runs out of memory), and a build that fails is done again at -O0: every level gives
the same numbers, bit for bit.  Without a C++ compiler (``$CXX``, else ``c++``, ``g++``
or ``clang++``) or with ``DSM_KERNEL=numpy``, the numpy solver runs instead.

References: I. Schur (1917), A. Cohn (1922); Householder, *The Theory of Matrices in
Numerical Analysis* (1964), sec. 6.7; T. J. Dekker, Numer. Math. 18 (1971); Y. Hida,
X. S. Li, D. H. Bailey, ARITH-15 (2001).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: no build lock
    fcntl = None

from .codegen import KMAX, runtime_digest

__all__ = ["kernel_enabled", "threads", "compiler", "load_kernel", "Kernel", "KernelWarning", "CXXFLAGS",
           "build_digest", "DIGEST_SYMBOL"]

#: Compiler flags: IEEE double, no contraction into fused multiply-adds (double-double needs
#: exact products and sums; the double path then matches the numpy solver's operations).
CXXFLAGS = ("-O2", "-std=c++11", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")
#: Grids smaller than this many points per thread run on one thread.
MIN_POINTS_PER_THREAD = 256


def threads() -> int:
    """Threads of the kernel: ``$DSM_THREADS``, else the cores this process may use."""
    env = os.environ.get("DSM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"DSM_THREADS must be a whole number >= 1, got {env!r}") from None
        if value < 1:
            raise ValueError(f"DSM_THREADS must be a whole number >= 1, got {env!r}")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class KernelWarning(UserWarning):
    """The compiled kernel is not available (no compiler, or the build failed): the
    vectorised numpy solver runs instead; or a cached source or library was rejected
    (damaged, or of another kernel) and is being rebuilt."""


class BuildFailed(RuntimeError):
    """The compiler failed on a kernel's source (out of memory, typically, for the largest
    sources at -O1); ``earlier``: it failed in an earlier process (its ``.failed`` file)."""

    def __init__(self, message: str, earlier: bool = False):
        super().__init__(message)
        self.earlier = earlier


@functools.lru_cache(maxsize=None)
def _which(env: str | None) -> str | None:
    if env:
        return shutil.which(env) or env
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else the first of ``c++``, ``g++``, ``clang++`` on the path."""
    return _which(os.environ.get("CXX"))


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> tuple:
    """``("-mfma",)`` where the CPU has fused multiply-add (Linux x86), so that
    double-double products use it (exact, 2 flops instead of Dekker's 17)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return ("-mfma",) if "fma" in line.split() else ()  # not fma4
    except OSError:
        pass
    return ()


def kernel_enabled() -> bool:
    """Whether the compiled kernel is tried (``DSM_KERNEL`` is not ``numpy`` and a compiler exists)."""
    if os.environ.get("DSM_KERNEL", "compiled").strip().lower() == "numpy":
        return False
    return compiler() is not None


# -- build and load -------------------------------------------------------------------


_scratch: list = []  # the per-process folder used when the disk cache is off


def _kernel_dir() -> Path:
    """``<cache>/kernels``; with the disk cache off, a folder of this process's own, removed
    when it exits (a loaded library can be unlinked: the mapping stays valid)."""
    from pencils.cache import cache_dir

    base = cache_dir()
    if base is not None:
        return base / "kernels"
    if not _scratch:
        import atexit

        _scratch.append(Path(tempfile.mkdtemp(prefix="dsm-kernels-")))
        atexit.register(shutil.rmtree, _scratch[0], True)
    return _scratch[0] / "kernels"


_GRID_ARGS = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
              ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_double, ctypes.c_double,
              ctypes.c_double, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
              ctypes.c_void_p]


class Kernel:
    """A kernel's source in the cache and its libraries, one per number type
    (``"double"``, ``"dd"``, ``"complex"``), each built on its first use:
    ``params``, ``outputs``, ``n_core`` and :meth:`grid`."""

    _ENTRY = {"double": "grid_double", "dd": "grid_dd", "complex": "grid_complex"}

    def __init__(self, params: tuple, outputs: tuple, builder, source: Path | None = None, n_core: int = 0):
        self.params, self.outputs, self.source, self.n_core = params, outputs, source, n_core
        self.n_params, self.n_out = len(params), len(outputs)
        self._builder = builder  # variant -> loaded and verified library (built when missing)
        self._libs: dict = {}

    def lib(self, variant: str = "double"):
        """The library of ``variant``, built and loaded on first use; ``None`` (with a
        :class:`KernelWarning`) when it cannot be built."""
        if variant not in self._libs:
            try:
                lib = self._builder(variant)
                layout = (ctypes.c_int * 4)()
                lib.kernel_layout(layout)
                if (layout[0], layout[2], layout[3]) != (self.n_params, self.n_out, self.n_core):
                    raise RuntimeError("the compiled kernel does not match its system")
                fn = getattr(lib, self._ENTRY[variant])
                fn.argtypes = _GRID_ARGS
                fn.restype = None
                for name in ("kernel_attracts", "kernel_attracts_complex"):
                    getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
                    getattr(lib, name).restype = ctypes.c_int
                self._libs[variant] = lib
            except (OSError, RuntimeError, NotImplementedError, AttributeError) as exc:
                what = {"double": "compiled kernel", "dd": "double-double kernel", "complex": "complex kernel"}
                warnings.warn(f"{what[variant]} unavailable ({exc}); using "
                              f"{'mpmath' if variant == 'dd' else 'the numpy solver'}", KernelWarning, stacklevel=3)
                self._libs[variant] = None
        return self._libs[variant]

    def attracts(self, J: np.ndarray) -> bool:
        """The kernel's attractivity test of a ``K x K`` Jacobian (``K <= KMAX``, real or
        complex): every eigenvalue of ``(I + J)/2`` in the open unit disk (for the tests)."""
        cplx = np.iscomplexobj(J)
        J = np.ascontiguousarray(J, dtype=complex if cplx else float)
        if J.ndim != 2 or J.shape[0] != J.shape[1] or not 1 <= J.shape[0] <= KMAX:
            raise ValueError(f"attracts needs a K x K matrix with 1 <= K <= {KMAX}")
        lib = self.lib("double")
        fn = lib.kernel_attracts_complex if cplx else lib.kernel_attracts
        return bool(fn(J.ctypes.data, J.shape[0]))

    def grid(self, P: np.ndarray, spectrum, cfg: np.ndarray, init: np.ndarray | None, estimate: bool,
             signs: np.ndarray, eps: float, safety: float, tiny: float, precision: str = "double",
             patterns: int = 3) -> tuple | None:
        """Solve every row of ``P`` (points x parameters; complex ``P`` runs the complex
        library) with the options ``cfg`` (slots :data:`numerics.options.KERNEL_CFG`); returns ``(V, ERR, CORE, RES, ITS)``, or ``None`` when the library of
        ``precision`` (``"double"`` or ``"dd"``) cannot be built."""
        variant = "complex" if np.iscomplexobj(P) else precision
        lib = self.lib(variant)
        if lib is None:
            return None
        fn = getattr(lib, self._ENTRY[variant])
        io = complex if variant == "complex" else float
        n = P.shape[0]
        P = np.ascontiguousarray(P, dtype=io)
        S, W = (np.ascontiguousarray(spectrum[0], dtype=float), np.ascontiguousarray(spectrum[1], dtype=float)) \
            if spectrum is not None else (np.zeros(1), np.zeros(1))
        ns = 0 if spectrum is None else S.size
        warm = init is not None
        init = np.ascontiguousarray(init, dtype=io) if warm else np.zeros(1, dtype=io)
        cfg = np.ascontiguousarray(cfg, dtype=float)
        signs = np.ascontiguousarray(signs, dtype=float)
        V = np.empty((n, self.n_out), dtype=io)
        ERR = np.zeros((n, self.n_out))
        CORE = np.empty((n, self.n_core), dtype=io)
        RES = np.empty(n)
        ITS = np.empty(n, dtype=np.int64)

        def ptr(a, lo=0):  # address of row lo
            return a.ctypes.data + lo * a.strides[0]

        def run(lo: int, hi: int) -> None:  # rows lo:hi (ctypes releases the GIL during the call)
            fn(hi - lo, ptr(P, lo), ns, ptr(S), ptr(W), ptr(cfg), ptr(init, lo if warm else 0), int(warm),
               int(bool(estimate)), ptr(signs), eps, safety, tiny, int(patterns), ptr(V, lo), ptr(ERR, lo),
               ptr(CORE, lo), ptr(RES, lo), ptr(ITS, lo))

        workers = min(threads(), max(1, n // MIN_POINTS_PER_THREAD))
        if workers == 1:
            run(0, n)
        else:  # points are independent: any split gives the same numbers
            from concurrent.futures import ThreadPoolExecutor

            bounds = [int(b) for b in np.linspace(0, n, workers + 1)]
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda k: run(bounds[k], bounds[k + 1]), range(workers)))
        return V, ERR, CORE, RES, ITS


_loaded: dict = {}
_failed: set = set()
#: extra flags per library: the double-double one is built at -O1 (its cost is the
#: arithmetic, not the code: the same speed as -O2 in the benchmark, half the build time)
_VARIANT_FLAGS = {"double": ("-DKERNEL_DOUBLE",), "dd": ("-DKERNEL_DD", "-O1"), "complex": ("-DKERNEL_COMPLEX",)}
#: sources above this size are built at -O1 in every variant: -O2's build time grows faster
#: than the source (8.8 MB: about 55 min at -O2, 32 at -O1), for no run time we could measure
#: (docs/spiked.md section 10)
LARGE_SOURCE_BYTES = 2_000_000
#: sources above this size are built at -O0: the register allocation of -O1 (and -Og) on their
#: largest function outgrows the memory of a workstation (28.6 MB with a 14 MB Jacobian: past
#: 18 GB after 9 minutes and still growing; 15.9 MB took 4 GB), where -O0 builds it in 2 minutes
#: and 5.7 GB and runs 2.9 times slower (docs/spiked.md section 18)
HUGE_SOURCE_BYTES = 20_000_000
#: the same for the double-double library, whose inlined arithmetic makes every function
#: several times larger: 4.4 MB builds in 7.4 minutes at -O1 (45 s at -O0, which runs 10 times
#: slower), 15.9 MB did not finish in an hour; it refines a few points only
HUGE_DD_SOURCE_BYTES = 8_000_000


def _size_flags(size: int, flags: tuple, variant: str = "double") -> tuple:
    """The optimisation level a source of ``size`` bytes is built at, appended to ``flags``
    (the last ``-O`` wins): -O2 (:data:`CXXFLAGS`), -O1 above :data:`LARGE_SOURCE_BYTES`, -O0
    above :data:`HUGE_SOURCE_BYTES` (:data:`HUGE_DD_SOURCE_BYTES` for ``variant="dd"``).  The
    values are the same at every level (no fast-math, no contraction), bit for bit."""
    if size > (HUGE_DD_SOURCE_BYTES if variant == "dd" else HUGE_SOURCE_BYTES):
        return (*flags, "-O0")
    if size > LARGE_SOURCE_BYTES and "-O1" not in flags:
        return (*flags, "-O1")
    return flags


#: The function every library exports: the digest of what it was built from (:func:`build_digest`).
DIGEST_SYMBOL = "dsm_kernel_digest"


def _header(name: str) -> bytes:
    """First line of the kernel source ``name.cpp``: the name it was written for, so that a
    source file found under another kernel's name is regenerated, never compiled."""
    return f"// dsm-curves {name}\n".encode()


def build_digest(source: bytes, cxx: str, flags: tuple) -> str:
    """SHA-256 of everything a library is built from: its source (the generated code with the
    hand-written runtime pasted in; without the name line, :func:`_body`), the compiler and
    every flag.  Each library
    exports it (:data:`DIGEST_SYMBOL`); the loader compares it with the digest of the source
    on disk, so a library built from anything else is never used."""
    digest = hashlib.sha256(f"{cxx}\0{' '.join(flags)}\0".encode())
    digest.update(source)
    return digest.hexdigest()


#: The seal appended to every library: this tag and the SHA-256 (hex) of the bytes before it.
_SEAL = b"\0dsm-sha256:"
_SEAL_LEN = len(_SEAL) + 64


def _seal(path: Path) -> None:
    """Append the seal to a freshly built library (``dlopen`` ignores bytes past the ELF's
    own contents)."""
    data = path.read_bytes()
    with path.open("ab") as fh:
        fh.write(_SEAL + hashlib.sha256(data).hexdigest().encode())


def _damage(path: Path) -> str | None:
    """Why the bytes of ``path`` are not a whole library built here (``None`` when they are).
    Checked before ``dlopen``: a truncated shared object can kill the process (SIGBUS)
    instead of raising."""
    data = path.read_bytes()
    if len(data) < _SEAL_LEN or data[-_SEAL_LEN:-64] != _SEAL:
        return "it is truncated or was not built here (no seal)"
    if hashlib.sha256(data[:-_SEAL_LEN]).hexdigest().encode() != data[-64:]:
        return "its bytes are damaged (seal mismatch)"
    return None


def _open(path: Path, digest: str):
    """``path`` loaded, after checking its seal and its build digest (``OSError`` when it
    cannot be loaded, ``RuntimeError`` when it is damaged, or carries no digest or another
    one)."""
    problem = _damage(path)
    if problem is not None:
        raise RuntimeError(problem)
    lib = ctypes.CDLL(str(path))
    try:
        fn = getattr(lib, DIGEST_SYMBOL)
    except AttributeError:
        raise RuntimeError("it carries no build digest") from None
    fn.argtypes, fn.restype = [], ctypes.c_char_p
    found = (fn() or b"").decode("ascii", "replace")
    if found != digest:
        raise RuntimeError(f"it was built from another source (digest {found[:12]}, expected {digest[:12]})")
    return lib


def _scratch_prefix(stem: str, digest: str) -> str:
    """The name prefix of one build's temporary files (the digest stub and the library before
    its rename): a build killed with its process leaves them, and the next build of the same
    library, holding its lock, removes them (:func:`_library`)."""
    return f".{stem}-{digest[:16]}-"


def _compile(folder: Path, name: str, flags: tuple, digest: str, stem: str) -> Path:
    """``name.cpp`` (and the one-line definition of the digest function) compiled into a
    fresh temporary file of ``folder``."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    prefix = _scratch_prefix(stem, digest)
    fd, stub = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".cpp")
    with os.fdopen(fd, "w") as fh:
        fh.write(f'extern "C" const char *{DIGEST_SYMBOL}(void) {{ return "{digest}"; }}\n')
    fd, tmp_lib = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".so")
    os.close(fd)
    try:
        proc = subprocess.run([cxx, *flags, "-o", tmp_lib, str(folder / f"{name}.cpp"), stub],
                              capture_output=True, text=True)
    except OSError:
        os.unlink(tmp_lib)
        raise
    finally:
        os.unlink(stub)
    if proc.returncode != 0:
        os.unlink(tmp_lib)
        raise BuildFailed(f"{cxx} {_level(flags)} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    _seal(Path(tmp_lib))
    return Path(tmp_lib)


def _library(folder: Path, name: str, variant: str, flags: tuple):
    """The loaded library of kernel ``name`` and ``variant``, built when missing.

    The file is named by the digest of its source, compiler and flags; the loader checks
    its seal (a hash of its bytes, :func:`_damage`) and the digest compiled into it.  A file
    that is damaged (truncated, garbage) or that was built from another source is rebuilt,
    once, with a :class:`KernelWarning`.
    A build goes to a temporary name, is loaded and checked there (a name never loaded
    before: ``dlopen`` would hand back a library already loaded under the final name),
    and is renamed into place atomically, so concurrent processes never see half a library.
    Builds of one library are serialised across processes (:func:`_build_lock`): a process that
    finds another one compiling waits and loads its result.  A compile that fails (out of
    memory, typically) is done again at -O0, once, with a :class:`KernelWarning`: the same
    numbers, about 3 times slower (:func:`_library_at`).
    """
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    flags = (*flags, *_VARIANT_FLAGS[variant])
    body = _body((folder / f"{name}.cpp").read_bytes())
    flags = _size_flags(len(body), flags, variant)
    try:
        return _library_at(folder, name, variant, flags, body, cxx)
    except BuildFailed as exc:
        if _level(flags) == "-O0":
            raise
        if not exc.earlier:
            warnings.warn(f"building kernel {name} ({variant}) at {_level(flags)} failed ({str(exc)[:300]}); "
                          "building it at -O0 instead (the same numbers, about 3 times slower)", KernelWarning,
                          stacklevel=6)
        return _library_at(folder, name, variant, (*flags, "-O0"), body, cxx)


def _level(flags: tuple) -> str:
    """The optimisation level of ``flags`` (the last ``-O``; the compiler's default ``-O0`` without one)."""
    return next((f for f in reversed(flags) if f.startswith("-O")), "-O0")


def _library_at(folder: Path, name: str, variant: str, flags: tuple, body: bytes, cxx: str):
    """:func:`_library` at the flags ``flags``: the library loaded, or built under its lock.  A
    failed compile leaves a ``.failed`` file (the compiler's message) beside the lock, so later
    processes do not run the compiler again at these flags (:class:`BuildFailed`, ``earlier``);
    delete it to try again."""
    digest = build_digest(body, cxx, flags)
    stem = f"{name}-{variant}"
    lib_path = folder / f"{stem}-{digest[:16]}.so"
    failed = folder / f"{stem}-{digest[:16]}.failed"
    rejected: set = set()
    lib = _existing(folder, variant, digest, lib_path, rejected)
    if lib is not None:
        return lib
    if failed.is_file():
        raise BuildFailed(f"an earlier build failed: {failed} (delete it to try again)", earlier=True)
    with _build_lock(folder / f"{stem}-{digest[:16]}.lock"):
        lib = _existing(folder, variant, digest, lib_path, rejected)  # built while this process waited
        if lib is not None:
            return lib
        if failed.is_file():  # another process's build failed while this one waited
            raise BuildFailed(f"an earlier build failed: {failed} (delete it to try again)", earlier=True)
        if fcntl is not None:  # the lock is held: files of this build's prefix are a killed build's
            for stale in folder.glob(f"{_scratch_prefix(stem, digest)}*"):
                _discard(stale)
        try:
            tmp = _compile(folder, name, flags, digest, stem)
        except BuildFailed as exc:
            with contextlib.suppress(OSError):  # a cache that cannot be written only forgets it
                failed.write_text(f"{exc}\n")
            raise
        try:
            lib = _open(tmp, digest)
            os.replace(tmp, lib_path)
        except BaseException:
            _discard(tmp)
            raise
    for old in folder.glob(f"{stem}-*.so"):  # libraries of an earlier source of this kernel
        if old != lib_path:
            _discard(old)
            _discard(folder / f"{old.stem}.lock")
    return lib


def _existing(folder: Path, variant: str, digest: str, lib_path: Path, rejected: set):
    """The library at ``lib_path`` (adopted from a renamed kernel if need be) when it is there
    and passes its checks; ``None`` otherwise.  A rejected file is warned about once
    (``rejected``: the ``(device, inode)`` of the files already rejected)."""
    if not lib_path.is_file():
        _adopt(folder, f"{variant}-{digest[:16]}", lib_path)
    try:
        st = lib_path.stat()
    except OSError:
        return None
    if (st.st_dev, st.st_ino) in rejected:
        return None
    try:
        return _open(lib_path, digest)
    except (OSError, RuntimeError) as exc:
        rejected.add((st.st_dev, st.st_ino))
        warnings.warn(f"compiled library {lib_path} rejected ({exc}); rebuilding it", KernelWarning, stacklevel=6)
        return None


@contextlib.contextmanager
def _build_lock(path: Path):
    """An exclusive lock on ``path`` across processes (``flock``; none where it is missing):
    processes that need the same library wait for one build instead of compiling it side by
    side (a 16 MB kernel takes half an hour and 4 GB per compiler)."""
    if fcntl is None:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _body(source: bytes) -> bytes:
    """The source without its first line (:func:`_header`, the kernel's name): what the library
    is compiled from.  An edit of the deriving code renames every kernel; the same generated
    code then keeps its library instead of compiling it again (minutes to an hour for the
    spiked systems)."""
    return source[source.find(b"\n") + 1:]


def _adopt(folder: Path, tail: str, lib_path: Path) -> None:
    """Link a sound library of the same body, flags and compiler, built under another
    kernel's name (``*-<tail>.so``, ``tail`` = variant and digest), to ``lib_path``.  Only its
    seal is checked here; the loader checks the digest compiled into it, as for any library."""
    for other in sorted(folder.glob(f"kernel-*-{tail}.so")):
        if other == lib_path or _damage(other) is not None:
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".adopt-", suffix=".so")
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(other, tmp)
        except OSError:
            try:
                shutil.copyfile(other, tmp)
            except OSError:
                _discard(tmp)
                continue
        os.replace(tmp, lib_path)
        return


def _discard(path) -> None:
    """Remove ``path`` if it is there (a temporary or superseded file; nothing else to do on failure)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_source(src: Path, name: str, source) -> None:
    """``source()`` (sympy) written to ``src`` under its header, atomically."""
    text = source()
    src.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=src.parent, prefix=".src-", suffix=".cpp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_header(name) + text.encode())
        os.replace(tmp, src)
    except BaseException:
        _discard(tmp)
        raise


def _source_is_ours(src: Path, name: str) -> bool:
    """Whether ``src`` exists and was written for the kernel ``name`` (its first line)."""
    try:
        with src.open("rb") as fh:
            return fh.readline() == _header(name)
    except OSError:
        return False


def load_kernel(key: str, params: tuple, outputs: tuple, n_core: int, source, code: tuple | None = None) -> Kernel | None:
    """The compiled kernel named by ``key`` (a cheap name; the cache key adds the fingerprint of
    ``code``, the packages the system behind ``key`` and its source depend on (default every
    deriving package), and the compiler flags), its source written by ``source()`` when missing
    (its libraries are built on first use); ``None`` (with a :class:`KernelWarning`) when the
    source cannot be written or generated."""
    from pencils.cache import cache_key

    flags = (*CXXFLAGS, *_cpu_flags())  # the flags name the library: a machine without FMA builds its own
    name = "kernel-" + cache_key("kernel", f"{key}\0{flags}\0{runtime_digest()}", code).split("-")[-1]
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        return None
    folder = _kernel_dir()
    try:
        if compiler() is None:
            raise RuntimeError("no C++ compiler found (set CXX)")
        src = folder / f"{name}.cpp"
        if not _source_is_ours(src, name):  # sympy: only when the source is missing (or not this kernel's)
            if src.is_file():
                warnings.warn(f"kernel source {src} was written for another kernel; regenerating it", KernelWarning,
                              stacklevel=3)
            _write_source(src, name, source)
    except (OSError, RuntimeError, NotImplementedError) as exc:
        _failed.add(name)
        warnings.warn(f"compiled kernel unavailable ({exc}); using the numpy solver", KernelWarning, stacklevel=3)
        return None
    kernel = Kernel(tuple(params), tuple(outputs), lambda variant: _library(folder, name, variant, flags), src,
                    int(n_core))
    _loaded[name] = kernel
    return kernel
