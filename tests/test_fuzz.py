"""Adversarial inputs at every public entry point (issue 18): each call must end in one of
three honest outcomes, never in a raw failure from deep inside numpy, scipy, mpmath or ctypes.

The outcome classes (:func:`outcome`):

* ``clear error`` -- a ``ValueError`` / ``TypeError`` (or the project's own
  ``ActivationSpecError``, ``DataFileError``, ``ConvergenceError``) whose message names the
  offending argument;
* ``correct value`` -- finite numbers that pass the entry point's sanity check (errors and
  risks >= 0, ...), converged where the API reports convergence;
* ``honest flag`` -- NaN where the API's convergence flag is False;

and the failures: ``obscure error`` (any other exception, or an error that does not name
the argument), ``hang`` (no answer within :data:`CALL_SECONDS`), ``wrong value`` (NaN or inf
reported as converged, or a value that fails the sanity check).

Each entry point gets pinned cases (one input each: NaN, +-inf, 0, negatives, huge and tiny
magnitudes, str, bool, complex, None, mixed lists, empty and misshapen arrays) and, where a
call is cheap, a hypothesis property over the same alphabet.  Cases that fail on this branch
and are being fixed on others are strict xfails (``issue 18: ...``): they turn into XPASS,
and must lose their mark, when the fixes merge.  ``python tests/test_fuzz.py`` prints the
outcome table of the pinned cases.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests._fuzz_known import KNOWN  # the strict xfails of this branch

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a single call may take before it counts as a hang.
CALL_SECONDS = 8
GOOD = ("clear error", "correct value", "honest flag")

#: The adversarial alphabet: label -> value.
BAD = {
    "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "zero": 0.0, "neg": -1.0, "huge": 1e300,
    "tiny": 1e-300, "str": "1", "bool": True, "complex": 1 + 1j, "none": None, "mixed": [1.0, "a"],
    "empty": np.array([]), "shape": np.ones((2, 2, 2)),
}


class _Hang(BaseException):
    """Raised by the alarm: not an ``Exception``, so no ``except Exception`` swallows it."""


@contextmanager
def _alarm(seconds: int):
    def ring(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _clear_types() -> tuple:
    from numerics import ConvergenceError
    from pencils.activation.common import ActivationSpecError
    from validation.images.data import DataFileError

    return ValueError, TypeError, ActivationSpecError, DataFileError, ConvergenceError, FloatingPointError


#: Fields that are inputs or flags, not computed values (``m`` may be inf: infinitely many noise draws).
_NOT_VALUES = {"converged", "m"}


def _numbers(value, depth: int = 0) -> list:
    """Every numeric leaf of a result (arrays, scalars, fields of dataclasses and objects)."""
    if depth > 4 or value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        return []
    if isinstance(value, (int, float, complex, np.number)):
        return [np.asarray(value)]
    if isinstance(value, np.ndarray):
        return [value] if value.dtype.kind in "fc" or value.dtype.kind in "iu" else []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v, depth + 1)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v, depth + 1)]
    fields = getattr(value, "__dataclass_fields__", None)
    items = {k: getattr(value, k) for k in fields} if fields else getattr(value, "__dict__", {})
    return [x for k, v in items.items() if not k.startswith("_") and k not in _NOT_VALUES and not callable(v)
            for x in _numbers(v, depth + 1)]


def outcome(call, names: tuple, sane=None) -> tuple[str, str]:
    """``(class, detail)`` of ``call()``; ``names``: the argument names a clear error may
    mention; ``sane(value)``: the entry point's sanity check of a finite result."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _alarm(CALL_SECONDS), np.errstate(all="ignore"):
                value = call()
    except _Hang:
        return "hang", f"no answer in {CALL_SECONDS} s"
    except _clear_types() as exc:
        text = str(exc).lower()
        if any(n.lower() in text for n in names):
            return "clear error", f"{type(exc).__name__}: {exc}"[:160]
        return "obscure error", f"{type(exc).__name__} not naming {names}: {exc}"[:200]
    except Exception as exc:  # noqa: BLE001 -- classifying every escape is the point
        return "obscure error", f"{type(exc).__name__}: {exc}"[:200]
    conv = getattr(value, "converged", None)
    if conv is None and isinstance(value, list) and value and all(hasattr(v, "resolved") for v in value):
        conv = [v.resolved for v in value]  # peaks: an unresolved stretch is flagged, not dropped
    leaves = [np.asarray(x, dtype=complex).ravel() for x in _numbers(value)]
    finite = all(np.all(np.isfinite(x)) for x in leaves)
    if conv is not None and not np.all(conv):
        return "honest flag", "flagged not converged"
    if not finite:
        return "wrong value", "NaN or inf without a False convergence flag"
    if sane is not None and not sane(value):
        return "wrong value", "fails the sanity check"
    return "correct value", "finite"


# -- the entry points, one builder per argument ------------------------------------------


def _theory():
    import pencils

    return pencils.build("relu")


@pytest.fixture(scope="module", autouse=True)
def _derived_once():
    """Derive and compile what the cases use before any alarm runs: the alarm times one call,
    not the one-off derivation (20 s for finite m on a cold cache) or kernel builds (the
    complex kernel of ``ReducedSolver.solve`` took 6-8 s inside the first complex case)."""
    from derivations import classic

    th = _theory()
    for m in (1, 4, math.inf):
        th.equations(m=m)
        th.errors(psi_n=1.0, psi_p=[0.5, 1.0, 2.0], t=0.5, lam=[[1e-2], [1e-6]], m=m, throw=False)
    from derivations.theory import reduced_solver

    s = reduced_solver("inf")  # its complex kernel: a one-off C++ build of 6-20 s, met by the complex cases
    p = {k: v for k, v in th.solver_params(np.array([2.0]), np.array([4.0]), 0.5, 1e-2, math.inf).items()
         if k in s.param_names}
    for name in ("lam", "psi_p"):
        if name in p:
            s.solve(dict(p, **{name: np.array([1.0 + 1e-3j])}), throw=False)
    classic.ridge_risk(gamma=0.5, lam=0.1, r2=1.0, sigma2=0.5)
    classic.random_features_risk(psi_p=2.0, psi_n=1.0, lam=1e-2, mu1=0.5, mustar=0.3)
    classic.marchenko_pastur_stieltjes(gamma=0.5, z=-1.0)


def _nonneg_errors(e) -> bool:
    ok = np.asarray(e.converged)
    return bool(np.all(np.asarray(e.test)[ok] >= 0) and np.all(np.asarray(e.train)[ok] >= 0))


ERRORS_BASE = dict(psi_n=2.0, psi_p=4.0, t=0.5, lam=1e-2, m=1)


def _errors(arg, value):
    kw = dict(ERRORS_BASE, **{arg: value})
    return lambda: _theory().errors(**kw, throw=False)


def _ridgeless(arg, value):
    kw = dict(psi_n=2.0, psi_p=4.0, t=0.5, m=1)
    kw[arg] = value
    return lambda: _theory().ridgeless(**kw)


def _peaks(arg, value):
    kw = dict(psi_n=2.0, t=0.5, m="inf", lam=1e-2)
    kw[arg] = value
    return lambda: _theory().peaks(**kw, points=24)


def _classic(fn_name, base, arg, value):
    def call():
        from derivations import classic

        return getattr(classic, fn_name)(**dict(base, **{arg: value}))
    return call


def _real_nonneg(v) -> bool:
    return bool(np.all(np.real(np.asarray(v)) >= 0))


def _validation(fn_name, base, arg, value, pre=None):
    def call():
        import validation

        kw = dict(pre() if pre else base, **{arg: value})
        return getattr(validation, fn_name)(**kw)
    return call


def _score(Y, t):
    return -np.asarray(Y) / (1 + t)


def _sampler_base():
    return dict(score=_score, n_samples=4, d=3, rng=np.random.default_rng(0), steps=4, progress=False)


def _tweedie_base():
    return dict(score=_score, Y=np.ones((4, 3)), t=0.5)


def _memorized_base():
    rng = np.random.default_rng(0)
    return dict(samples=rng.normal(size=(6, 4)), train=rng.normal(size=(8, 4)), bootstrap=20)


def _grid_base():
    return dict(act="relu", X=np.random.default_rng(0).normal(size=(20, 4)), times=[0.5], p=8, lam=1e-2, m=1,
                progress=False)


PROBLEM_BASE = dict(d=10, psi_n=2.0, psi_p=2.0, t=0.5, lam=1e-2, m=1)
SIM_BASE = dict(activation="relu", d=8, psi_n=1.0, psi_p=1.0, t=0.5, lam=1e-2, m=1, seeds=1, progress=False)


def _fit_score(arg, value):
    def call():
        import validation

        kw = dict(act="relu", problem=validation.make_problem(**PROBLEM_BASE), seed=0)
        kw[arg] = value
        return validation.fit_score(**kw)
    return call


def _build(arg, value):
    def call():
        import pencils

        return pencils.build(**dict(dict(activation="relu", covariance=None), **{arg: value}))
    return call


def _activation(arg, value):
    def call():
        import pencils

        return pencils.activation(**dict(dict(spec="relu", dps=30), **{arg: value}))
    return call


def _equations(arg, value):
    return lambda: _theory().equations(**{arg: value})


def _mp_system():
    from derivations import classic

    return classic.system("marchenko_pastur")


def _numerics(fn_name, arg, value):
    def call():
        import numerics

        if fn_name == "solve_mp":
            kw = dict(system=_mp_system(), params=dict(gamma=0.5, z=-1.0), dps=30)
            kw[arg] = value if arg != "params" else dict(gamma=value, z=-1.0)
            return numerics.solve_mp(**kw)
        if fn_name == "ReducedSolver.solve":
            from derivations.theory import reduced_solver

            s = reduced_solver("inf")
            p = dict(_theory().solver_params(np.array([2.0]), np.array([4.0]), 0.5, 1e-2, math.inf))
            p = {k: v for k, v in p.items() if k in s.param_names}
            p[arg] = value
            return s.solve(p, throw=False)
        return getattr(numerics, fn_name)(value)
    return call


def _extrapolate(arg, value):
    def call():
        import validation

        return validation.extrapolate(value)
    return call


def _spectrum(arg, value):
    def call():
        import validation

        return validation.spectrum(value)
    return call


_IDX: list = []


def _idx_file() -> str:
    """A folder holding one small valid IDX images file (the train split: 8 images of 4 x 4),
    written once per process (a folder, so that ``split`` is used)."""
    if not _IDX:
        import atexit
        import shutil
        import tempfile

        from validation.images import data

        folder = tempfile.mkdtemp(prefix="fuzz-idx-")
        atexit.register(shutil.rmtree, folder, True)
        data.write_idx(os.path.join(folder, "train-images-idx3-ubyte"), np.arange(128, dtype=np.uint8).reshape(8, 4, 4))
        _IDX.append(folder)
    return _IDX[0]


def _load(fn_name):
    def make(arg, value):
        def call():
            import validation

            kw = dict(path=_idx_file())
            kw[arg] = value
            return getattr(validation, fn_name)(**kw)
        return call
    return make


#: entry point -> (builder(arg, value), arguments, sanity check)
ENTRIES = {
    "build": (_build, ("activation", "covariance"), None),
    "activation": (_activation, ("spec", "dps"), None),
    "errors": (_errors, ("psi_n", "psi_p", "t", "lam", "m"), _nonneg_errors),
    "equations": (_equations, ("m",), None),
    "ridgeless": (_ridgeless, ("psi_n", "psi_p", "t", "m"), None),
    "peaks": (_peaks, ("psi_n", "t", "m", "lam"), None),
    "ridge_risk": (lambda a, v: _classic("ridge_risk", dict(gamma=0.5, lam=0.1, r2=1.0, sigma2=0.1), a, v),
                   ("gamma", "lam", "r2", "sigma2"), _real_nonneg),
    "random_features_risk": (lambda a, v: _classic("random_features_risk", dict(psi_p=2.0, psi_n=1.0, lam=0.1,
                                                   mu1=0.5, mustar=0.3), a, v),
                             ("psi_p", "psi_n", "lam", "mu1", "mustar"), _real_nonneg),
    "marchenko_pastur_stieltjes": (lambda a, v: _classic("marchenko_pastur_stieltjes", dict(gamma=0.5, z=-1.0), a,
                                                         v), ("gamma", "z"), None),
    "compile_reduced": (lambda a, v: _numerics("compile_reduced", a, v), ("reduced",), None),
    "ReducedSolver": (lambda a, v: _numerics("ReducedSolver", a, v), ("reduced",), None),
    "compile": (lambda a, v: _numerics("compile", a, v), ("system",), None),
    "solve_mp": (lambda a, v: _numerics("solve_mp", a, v), ("params", "dps"), None),
    "ReducedSolver.solve": (lambda a, v: _numerics("ReducedSolver.solve", a, v), ("lam", "psi_p"), None),
    "make_problem": (lambda a, v: _validation("make_problem", PROBLEM_BASE, a, v), tuple(PROBLEM_BASE), None),
    "simulate": (lambda a, v: _validation("simulate", SIM_BASE, a, v), ("d", "psi_n", "t", "lam", "m", "seeds"),
                 None),
    "fit_score": (_fit_score, ("problem", "seed"), None),
    "extrapolate": (_extrapolate, ("results_by_d",), None),
    "load_images": (_load("load_images"), ("path", "split", "downsample"), None),
    "load_dataset": (_load("load_dataset"), ("path", "split", "downsample"), None),
    "spectrum": (_spectrum, ("X",), lambda v: bool(np.all(np.asarray(v) >= -1e-12))),
    "memorized_fraction": (lambda a, v: _validation("memorized_fraction", None, a, v, _memorized_base),
                           ("samples", "train", "ratio"), None),
    "sample_sde": (lambda a, v: _validation("sample_sde", None, a, v, _sampler_base), ("n_samples", "d", "T", "t_min"),
                   None),
    "sample_ode": (lambda a, v: _validation("sample_ode", None, a, v, _sampler_base), ("n_samples", "d", "steps"),
                   None),
    "tweedie": (lambda a, v: _validation("tweedie", None, a, v, _tweedie_base), ("Y", "t"), None),
    "train_score_grid": (lambda a, v: _validation("train_score_grid", None, a, v, _grid_base),
                         ("X", "times", "p", "lam", "m"), None),
}

#: Names a clear error may use for an argument (the argument's own name, and its spellings).
ALIASES = {"activation": ("activation", "act"), "spec": ("activation", "spec"), "results_by_d": ("result", "d"),
           "reduced": ("reduced", "system"), "params": ("gamma", "param"), "X": ("x", "array", "matrix")}


def pinned_cases() -> list:
    """``(id, entry, arg, label)`` for every entry point, argument and adversarial value."""
    out = []
    for entry, (_, args, _) in ENTRIES.items():
        for arg in args:
            for label in BAD:
                out.append((f"{entry}-{arg}-{label}", entry, arg, label))
    return out


def run_case(entry: str, arg: str, label: str) -> tuple[str, str]:
    make, _, sane = ENTRIES[entry]
    names = ALIASES.get(arg, (arg,)) + ((arg,) if arg not in ALIASES.get(arg, ()) else ())
    return outcome(make(arg, BAD[label]), names, sane)


def _known(name: str):
    """The strict xfail mark of a case that fails on this branch (none for the others)."""
    return [pytest.mark.xfail(strict=True, reason=f"issue 18: {KNOWN[name]}")] if name in KNOWN else []


def _param(case):
    cid, entry, arg, label = case
    return pytest.param(entry, arg, label, id=cid, marks=_known(cid))


@pytest.mark.parametrize("entry, arg, label", [_param(c) for c in pinned_cases()])
def test_pinned_adversarial_input(entry, arg, label):
    """One adversarial value in one argument, the others valid: a clear error naming the
    argument, a sane finite value, or NaN flagged not converged."""
    kind, detail = run_case(entry, arg, label)
    assert kind in GOOD, detail


# -- hypothesis properties of the cheap numeric entry points -----------------------------

_ALPHABET = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.booleans(), st.none(),
    st.complex_numbers(allow_nan=False, max_magnitude=1e6), st.text(max_size=3),
    st.lists(st.one_of(st.floats(-1e3, 1e3), st.text(max_size=2)), max_size=3),
)


@given(gamma=_ALPHABET, z=_ALPHABET)
@example(gamma=0.5, z=-1.0)
@example(gamma=1e-300, z=-1e300)
@example(gamma=[0.5, "a"], z=-1.0)
@example(gamma=np.array([]), z=-1.0)
@example(gamma=0.5, z=np.array([]))
def test_marchenko_pastur_never_fails_obscurely(gamma, z):
    """Any pair of inputs: a clear error naming gamma or z, or a finite transform."""
    from derivations import classic

    kind, detail = outcome(lambda: classic.marchenko_pastur_stieltjes(gamma, z), ("gamma", "z", "support"))
    assert kind in GOOD, detail


@given(gamma=_ALPHABET, lam=_ALPHABET, r2=_ALPHABET, sigma2=_ALPHABET)
@example(gamma=1e300, lam=1e-300, r2=0.0, sigma2=0.0)
@example(gamma=0.5, lam=0.1, r2=1.0, sigma2=float("nan"))
def test_ridge_risk_never_fails_obscurely(gamma, lam, r2, sigma2):
    """Any four inputs: a clear error naming one of them, or a finite risk >= 0."""
    from derivations import classic

    kind, detail = outcome(lambda: classic.ridge_risk(gamma, lam, r2, sigma2), ("gamma", "lam", "r2", "sigma2"),
                           _real_nonneg)
    assert kind in GOOD, detail


@given(psi_n=_ALPHABET, psi_p=_ALPHABET, lam=_ALPHABET)
@example(psi_n=1.0, psi_p=1.0, lam=1e-12)
@example(psi_n=2.0, psi_p=4.0, lam=float("nan"))
@example(psi_n=2.0, psi_p=4.0, lam="")
def test_errors_never_fail_obscurely(psi_n, psi_p, lam):
    """``theory.errors`` at any (psi_n, psi_p, lam): a clear error, sane converged errors
    or NaN flagged not converged."""
    kind, detail = outcome(lambda: _theory().errors(psi_n=psi_n, psi_p=psi_p, t=0.5, lam=lam, m=1, throw=False),
                           ("psi_n", "psi_p", "lam"), _nonneg_errors)
    assert kind in GOOD, detail


#: Seconds one point of ``errors`` may take (typical points take milliseconds).
POINT_SECONDS = 3


def test_a_tiny_ridge_at_the_interpolation_peak_answers_promptly():
    """psi_n = psi_p = 1 with lam = 1e-300: the continuation in lam walks 300 decades (about
    10 s on two shared cores); one point must answer (a value or a False flag) within
    :data:`POINT_SECONDS`."""
    import time

    start = time.perf_counter()
    kind, detail = outcome(lambda: _theory().errors(psi_n=1.0, psi_p=1.0, t=0.5, lam=1e-300, m=1, throw=False),
                           ("lam",), _nonneg_errors)
    assert kind in GOOD, detail
    assert time.perf_counter() - start < POINT_SECONDS


@given(d=_ALPHABET, psi_n=_ALPHABET, m=_ALPHABET)
@example(d=10, psi_n=2.0, m="inf")
def test_make_problem_never_fails_obscurely(d, psi_n, m):
    """``make_problem`` checks its arguments before any work."""
    import validation

    kind, detail = outcome(lambda: validation.make_problem(**dict(PROBLEM_BASE, d=d, psi_n=psi_n, m=m)),
                           ("d", "psi_n", "m"))
    assert kind in GOOD, detail


# -- the command line ---------------------------------------------------------------------

CLI_CASES = {
    "table-d-nan": ["table", "--d", "nan", "100"], "table-seeds-neg": ["table", "--seeds", "-3"],
    "structured-seeds-str": ["structured", "--seeds", "many"], "time-d-zero": ["time", "--d", "0", "10"],
    "real-missing-data": ["real", "--data", "/nonexistent/images.idx"], "real-no-data": ["real"],
    "report-lam-neg": ["report", "--lam", "-1"], "report-t-inf": ["report", "--t", "inf"],
    "report-m-str": ["report", "--m", "lots"], "report-psi-n-nan": ["report", "--psi-n", "nan"],
    "main-activation-bogus": ["--activation", "no_such_function"], "main-grid-zero": ["--grid", "0"],
    "bogus-subcommand": ["frobnicate"],
}


@pytest.mark.parametrize("argv", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_command_line_rejects_bad_arguments_in_one_line(argv, tmp_path):
    """A bad argument: exit status 2 within seconds, one line on stderr that names it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "validation.cli", *argv, "--out", str(tmp_path)]
                          if argv[0] not in ("frobnicate",) else [sys.executable, "-m", "validation.cli", *argv],
                          env=env, capture_output=True, text=True, timeout=15, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-500:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("usage")]
    assert "Traceback" not in proc.stderr
    assert len(lines) <= 2, proc.stderr
    named = [a for a in argv if a.startswith("--")] or argv[:1]
    assert any(n.lstrip("-").lower() in proc.stderr.lower() for n in named), proc.stderr


if __name__ == "__main__":  # the outcome table of the pinned cases
    from collections import Counter

    sys.path.insert(0, str(ROOT))
    table: dict = {}
    for cid, entry, arg, label in pinned_cases():
        kind, detail = run_case(entry, arg, label)
        table.setdefault(entry, Counter())[kind] += 1
        if kind not in GOOD:
            print(f"FAIL {cid}: {kind}: {detail}", flush=True)
    kinds = ("clear error", "correct value", "honest flag", "obscure error", "hang", "wrong value")
    print("| entry point | " + " | ".join(kinds) + " |")
    for entry, counts in table.items():
        print(f"| {entry} | " + " | ".join(str(counts[k]) for k in kinds) + " |")
