"""The compiled kernel (:mod:`numerics.kernel`): the same algorithm as the numpy solver,
its attractivity test, the double-double refinement against mpmath, and the fallback
when no compiler is available."""
from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import pencils
from derivations.model import QUANTITIES
from derivations.theory import reduced_solver
from numerics.kernel import KernelWarning, kernel_enabled
from numerics.options import SolveOptions
from numerics.reduced import compile_reduced
from pencils.expr import D, Space, gaussian, inverse, trace
from pencils.freeprob import equations
from pencils.reduce import reduce_systems

pytestmark = pytest.mark.skipif(not kernel_enabled(), reason="no C++ compiler, or DSM_KERNEL=numpy")

THEORY = pencils.build("relu")
M_OF = {"1": 1, "finite": 4, "inf": math.inf}


def _params(kind, psi_n, psi_p, lam, t=0.5):
    solver = reduced_solver(kind)
    p = THEORY.solver_params(np.asarray(psi_n, float), np.asarray(psi_p, float), t, lam, M_OF[kind])
    return solver, {k: v for k, v in p.items() if k in solver.param_names}


def _random_points(rng, n):
    """Both sides of p = n and p = n m, ridges from 1e-4 to 1."""
    psi_n = np.exp(rng.uniform(np.log(0.1), np.log(10), n))
    psi_p = np.exp(rng.uniform(np.log(0.1), np.log(10), n))
    lam = np.exp(rng.uniform(np.log(1e-4), 0, n))
    return psi_n, psi_p, lam


@pytest.mark.parametrize("kind", ["1", "finite", "inf"])
def test_kernel_agrees_with_the_numpy_solver_within_the_estimates(kind):
    """Same points, both backends: same flags; values within the sum of the two rounding
    estimates (the operations are the same up to integer powers: x*x vs numpy's pow)."""
    psi_n, psi_p, lam = _random_points(np.random.default_rng(7), 300)
    solver, params = _params(kind, psi_n, psi_p, lam)
    k = solver.solve(params, throw=False, estimate_error=True, backend="kernel")
    n = solver.solve(params, throw=False, estimate_error=True, backend="numpy")
    assert np.array_equal(k.converged, n.converged)
    assert k.converged.mean() > 0.95
    ok = k.converged
    for q in QUANTITIES:
        gap = np.abs(k.values[q][ok] - n.values[q][ok])
        assert np.all(gap <= k.error[q][ok] + n.error[q][ok]), q
        # the estimates themselves are of the same size (same moves, same safety factor)
        ratio = k.error[q][ok] / n.error[q][ok]
        assert np.median(ratio) == pytest.approx(1.0, rel=0.5)


def test_kernel_on_a_classic_system_equals_the_closed_form():
    """A reduced solver without a cache key (named by its system): Marchenko--Pastur."""
    g, lam = sympy.symbols("gamma lam", positive=True)
    X = gaussian("X", Space("n", 1 / g), D)
    solver = compile_reduced(reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + lam)))}),
                             options=SolveOptions(continuation="lam"))
    gam, z = 0.5, np.geomspace(1e-3, 10, 50)
    sol = solver.solve(dict(gamma=gam, lam=z), backend="kernel")
    # Stieltjes transform of MP with ratio gamma at -z (resolvent of g X^T X, X n x d, n = d/g)
    ref = [(-(z_ + 1 - gam) + math.sqrt((z_ + 1 - gam) ** 2 + 4 * gam * z_)) / (2 * gam * z_) for z_ in z]
    np.testing.assert_allclose(sol.values["mp"], ref, rtol=1e-12)


def test_attractivity_test_matches_the_eigenvalues():
    """Schur--Cohn on the characteristic polynomial vs numpy's eigenvalues of (I + J)/2,
    real and complex J."""
    kernel = reduced_solver("inf")._kernel()
    rng = np.random.default_rng(3)
    checked = {True: 0, False: 0}
    for i in range(6000):
        K = int(rng.integers(1, 7))
        J = rng.normal(scale=rng.uniform(0.2, 2.5), size=(K, K))
        if i % 2:  # complex Jacobians (spectral arguments off the real axis)
            J = J + 1j * rng.normal(scale=rng.uniform(0.2, 2.5), size=(K, K))
        rho = np.max(np.abs(np.linalg.eigvals(0.5 * (np.eye(K) + J))))
        if abs(rho - 1) < 1e-9:
            continue
        assert kernel.attracts(J) == (rho < 1), (J, rho)
        checked[bool(rho < 1)] += 1
    assert min(checked.values()) > 500  # both answers well represented
    assert not kernel.attracts(np.array([[np.nan]]))


@pytest.mark.parametrize("psi_n,psi_p,lam", [(0.2, 1.5, 1e-2), (0.3, 3.0, 1e-3), (1.0, 10.0, 1e-3)])
def test_double_double_refinement_matches_mpmath(psi_n, psi_p, lam):
    """Deep memorisation at m = 1 (the train error is a tiny difference of large traces):
    the double-double values agree with 40-digit mpmath to far better than double, and
    their own rounding estimate bounds the difference."""
    solver, params = _params("1", [psi_n], [psi_p], lam)
    sol = solver.solve(params, estimate_error=True)
    rd = solver.refine_dd(params, sol.core)
    assert rd.converged.all()
    mp_params = {k: v for k, v in THEORY.mp_params(psi_n, psi_p, 0.5, lam, 1, 40).items()
                 if k in solver.param_names}
    exact = solver.solve_mp(mp_params, 40, init=list(sol.core[0])).values
    for q in QUANTITIES:
        ref = float(exact[q])
        gap = abs(rd.values[q][0] - ref)
        assert gap <= rd.error[q][0] + 2 * np.finfo(float).eps * abs(ref), q
        assert rd.error[q][0] < 1e-14 * abs(ref), q
        # double precision is much worse here; the flag it raised was right
        assert abs(sol.values[q][0] - ref) <= sol.error[q][0]


def test_refined_points_are_right_to_their_reported_accuracy():
    """errors() refines the points double precision cannot resolve (m = 1 memorisation):
    they are marked, resolved, and right to rounding_error against 40-digit mpmath."""
    axis = np.geomspace(0.15, 0.4, 6)
    e = THEORY.errors(psi_n=axis[None, :], psi_p=axis[:, None] * 12, t=0.5, lam=1e-3, m=1)
    assert e.converged.all()
    assert e.refined.sum() >= 5
    idx = np.argwhere(e.refined)[:4]
    pn, pp = np.broadcast_arrays(axis[None, :], axis[:, None] * 12)
    for i, j in idx:
        ex = THEORY.errors(psi_n=pn[i, j], psi_p=pp[i, j], t=0.5, lam=1e-3, m=1, precision=40)
        for q in ("test", "train"):
            ref = float(getattr(ex, q).item())
            assert abs(getattr(e, q)[i, j] - ref) <= e.rounding_error[i, j] + 4e-16 * abs(ref)


def test_without_a_compiler_the_numpy_solver_runs(monkeypatch):
    """An unusable compiler gives one KernelWarning and the numpy solver's answers."""
    g, lam = sympy.symbols("gamma lam_nc", positive=True)
    X = gaussian("X", Space("n", 1 / g), D)
    R = reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + lam)))})
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    solver = compile_reduced(R, key="test-kernel-no-compiler")
    with pytest.warns(KernelWarning):
        sol = solver.solve(dict(gamma=0.5, lam_nc=[0.1, 1.0]))
    ref = solver.solve(dict(gamma=0.5, lam_nc=[0.1, 1.0]), backend="numpy")
    np.testing.assert_array_equal(sol.values["mp"], ref.values["mp"])
    with pytest.raises(ValueError, match="not available"):
        solver.solve(dict(gamma=0.5, lam_nc=1.0), backend="kernel")


def test_backend_argument_is_checked():
    solver, params = _params("inf", [1.0], [2.0], 1e-2)
    with pytest.raises(ValueError, match="backend"):
        solver.solve(params, backend="fortran")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solver.solve(params, backend="numpy")


def test_single_points_equal_grid_points_in_the_kernel():
    """The kernel solves each point on its own: alone and inside a grid, bit for bit."""
    psi_n, psi_p, lam = _random_points(np.random.default_rng(11), 40)
    solver, params = _params("finite", psi_n, psi_p, lam)
    grid = solver.solve(params, throw=False, estimate_error=True)
    for i in range(0, 40, 7):
        one = solver.solve({k: (np.asarray(v)[i:i + 1] if np.ndim(v) else v) for k, v in params.items()},
                           throw=False, estimate_error=True)
        for q in QUANTITIES:
            assert np.array_equal(one.values[q], grid.values[q][i:i + 1], equal_nan=True)
            assert np.array_equal(one.error[q], grid.error[q][i:i + 1])


def test_mpmath_reference_value_of_the_peak_is_unchanged():
    """The refinement did not move the independent 50-digit peak value (issue 7)."""
    e = THEORY.errors(psi_n=1, psi_p=1 - 1e-6, t=0.5, lam=1e-10, m=1, precision=50)
    assert float(e.test.item()) == pytest.approx(14655.74071600, rel=1e-9)
    assert isinstance(e.test.item(), mpmath.mpf)


def test_threads_change_no_number(monkeypatch):
    """The grid is split across threads by rows; every point is solved on its own, so one
    thread and three give the same bits."""
    psi_n, psi_p, lam = _random_points(np.random.default_rng(5), 1200)
    solver, params = _params("1", psi_n, psi_p, lam)
    monkeypatch.setenv("DSM_THREADS", "1")
    one = solver.solve(params, throw=False, estimate_error=True)
    monkeypatch.setenv("DSM_THREADS", "3")
    three = solver.solve(params, throw=False, estimate_error=True)
    for q in QUANTITIES:
        assert np.array_equal(one.values[q], three.values[q], equal_nan=True)
        assert np.array_equal(one.error[q], three.error[q])
    assert np.array_equal(one.iterations, three.iterations)
    monkeypatch.setenv("DSM_THREADS", "two")
    with pytest.raises(ValueError, match="DSM_THREADS"):
        solver.solve(params)


@pytest.mark.parametrize("kind", ["1", "finite", "inf"])
def test_rounding_estimate_bounds_the_error_of_every_accepted_point(kind):
    """Double-double values as the truth (themselves checked against mpmath above): where
    errors() would accept a double-precision value (estimate <= 1e-8 |v| + 1e-10), the
    estimate bounds the true error and the value meets the threshold; across ridges down
    to 1e-4 and small t, where the memorisation regime makes the cancellation worst."""
    axis = np.geomspace(0.1, 10, 24)
    accepted = flagged = 0
    for lam in (1e-3, 1e-4):
        for t in (0.1, 0.5):
            solver, params = _params(kind, axis[None, :], axis[:, None], lam, t)
            params = {k: np.broadcast_to(v, (24, 24)) for k, v in params.items()}
            sol = solver.solve(params, throw=False, estimate_error=True)
            ok = sol.converged
            rd = solver.refine_dd({k: v[ok] for k, v in params.items()}, sol.core[ok])
            good = rd.converged
            acc = np.ones(good.shape, bool)
            for q in QUANTITIES:
                acc &= sol.error[q][ok] <= 1e-8 * np.abs(sol.values[q][ok]) + 1e-10
            sel = acc & good
            for q in QUANTITIES:
                v, truth = sol.values[q][ok][sel], rd.values[q][sel]
                gap = np.abs(v - truth)
                assert np.all(gap <= sol.error[q][ok][sel]), (lam, t, q)
                assert np.all(gap <= 1e-8 * np.abs(truth) + 1e-10 + 1e-16 * np.abs(truth))
            accepted += int(sel.sum())
            flagged += int((~acc).sum())
    assert accepted > 1000  # of 2304: most points are resolved in double precision
    if kind != "inf":  # the memorisation regime of finite m is where double precision fails
        assert flagged > 0


def test_structured_refinement_matches_mpmath():
    """Spectral means in the kernel (loops over the atoms), in double and double-double:
    a two-level spectrum, m = 1, deep memorisation."""
    theory = pencils.build("relu", covariance=([0.25, 2.5], [0.7, 0.3]))
    solver = reduced_solver("1", True)
    p = theory.solver_params(np.array([0.15]), np.array([2.0]), 0.3, 1e-3, 1)
    params = {k: v for k, v in p.items() if k in solver.param_names}
    sol = solver.solve(params, spectrum=theory.spectrum, estimate_error=True)
    rd = solver.refine_dd(params, sol.core, spectrum=theory.spectrum)
    mp_params = {k: v for k, v in theory.mp_params(0.15, 2.0, 0.3, 1e-3, 1, 40).items() if k in solver.param_names}
    exact = solver.solve_mp(mp_params, 40, init=list(sol.core[0]), spectrum=theory.spectrum).values
    for q in QUANTITIES:
        ref = float(exact[q])
        assert abs(rd.values[q][0] - ref) <= rd.error[q][0] + 2 * np.finfo(float).eps * abs(ref)
        assert abs(sol.values[q][0] - ref) <= sol.error[q][0]
    assert sol.error["train"][0] > 1e-6 * abs(float(exact["train"]))  # double precision is visibly strained here


def test_numpy_continuation_does_not_depend_on_the_batch():
    """A point that needs the continuation in lam (tiny ridge at the interpolation peak)
    walks its own number of steps: alone and beside another such point with a different
    ridge (more steps), the numpy path gives the same bits (the kernel walks the same steps)."""
    solver, params = _params("1", [1.0, 1.0], [0.999, 0.999], np.array([1e-5, 1e-8]))
    both = solver.solve(params, throw=False, backend="numpy")
    # the point with the fewer steps (lam = 1e-5): alone it walks 20, its neighbour 32
    alone = solver.solve({k: (np.asarray(v)[:1] if np.ndim(v) else v) for k, v in params.items()},
                         throw=False, backend="numpy")
    assert alone.converged[0] and alone.iterations[0] > 300  # the cold solve failed, the walk did it
    one = {k: (np.asarray(v)[:1] if np.ndim(v) else v) for k, v in params.items()}
    kernel = solver.solve(one, throw=False, backend="kernel", estimate_error=True)
    numpy_ = solver.solve(one, throw=False, backend="numpy", estimate_error=True)
    assert kernel.converged[0] and kernel.iterations[0] > 300
    for q in QUANTITIES:  # the two backends walk the same path (up to rounding)
        assert abs(kernel.values[q][0] - numpy_.values[q][0]) <= kernel.error[q][0] + numpy_.error[q][0]
    for q in QUANTITIES:
        assert np.array_equal(alone.values[q], both.values[q][:1], equal_nan=True)
    assert np.array_equal(alone.iterations, both.iterations[:1])


_log = lambda lo, hi: st.floats(math.log(lo), math.log(hi)).map(math.exp)  # noqa: E731


@settings(max_examples=40, deadline=None)
@given(psi_n=_log(0.1, 10), psi_p=_log(0.1, 10), lam=_log(1e-4, 1.0), t=st.floats(0.05, 3.0),
       kind=st.sampled_from(["1", "finite", "inf"]), others=st.lists(_log(0.1, 10), min_size=2, max_size=2))
def test_kernel_properties(psi_n, psi_p, lam, t, kind, others):
    """Any point: the kernel's value is physical (both errors >= 0) or flagged; it is the same
    bits alone and inside a batch with two other points; and it agrees with the numpy backend
    within the two rounding estimates."""
    solver, params = _params(kind, [psi_n, others[0], others[1]], [psi_p, psi_p, others[0]], lam, t)
    batch = solver.solve(params, throw=False, estimate_error=True)
    one = {k: (np.asarray(v)[:1] if np.ndim(v) else v) for k, v in params.items()}
    alone = solver.solve(one, throw=False, estimate_error=True)
    ref = solver.solve(one, throw=False, estimate_error=True, backend="numpy")
    assert alone.converged[0] == batch.converged[0] == ref.converged[0]
    for q in QUANTITIES:
        assert np.array_equal(alone.values[q], batch.values[q][:1], equal_nan=True)
        if alone.converged[0]:
            v, err = alone.values[q][0], alone.error[q][0]
            assert v >= -err, (q, v, err)
            assert abs(v - ref.values[q][0]) <= err + ref.error[q][0]


def test_cache_off_builds_in_a_scratch_folder_removed_at_exit():
    """DSM_CACHE_DIR=off: the kernel is built in a folder of the process's own, which is
    gone once the process exits."""
    code = ("import pencils\nfrom numerics import kernel\n"
            "e = pencils.build('relu').errors(psi_n=2, psi_p=4, t=0.5, lam=1e-2, m='inf')\n"
            "assert list(kernel._scratch[0].rglob('*.so')), 'no library built'\n"
            "print(kernel._scratch[0])\n")
    env = dict(os.environ, DSM_CACHE_DIR="off", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder.name.startswith("dsm-kernels-") and not folder.exists()


def test_huge_sources_build_at_O0_with_the_same_numbers(tmp_path, monkeypatch):
    """The optimisation level follows the source's size (-O2, -O1 above 2 MB, -O0 above
    ``HUGE_SOURCE_BYTES``, where -O1 runs out of memory), and a library built at -O0 gives the
    same values, estimates and iterations as the default one, bit for bit."""
    from numerics import kernel as K

    base = (*K.CXXFLAGS, "-DKERNEL_DOUBLE")
    assert K._size_flags(K.LARGE_SOURCE_BYTES, base) == base
    assert K._size_flags(K.LARGE_SOURCE_BYTES + 1, base)[-1] == "-O1"
    assert K._size_flags(K.HUGE_SOURCE_BYTES + 1, base)[-1] == "-O0"
    dd = (*K.CXXFLAGS, "-DKERNEL_DD", "-O1")
    assert K._size_flags(K.HUGE_DD_SOURCE_BYTES, dd, "dd") == dd
    assert K._size_flags(K.HUGE_DD_SOURCE_BYTES + 1, dd, "dd")[-1] == "-O0"
    assert K._size_flags(K.HUGE_DD_SOURCE_BYTES + 1, base, "double")[-1] == "-O1"

    psi_n, psi_p, lam = _random_points(np.random.default_rng(8), 60)
    solver, params = _params("1", psi_n, psi_p, lam)
    ref = solver.solve(params, throw=False, estimate_error=True)
    kernel = solver._kernel(solver.options.continuation)
    assert kernel is not None and kernel.source.stat().st_size < K.LARGE_SOURCE_BYTES  # built at -O2
    name = kernel.source.stem
    (tmp_path / kernel.source.name).write_bytes(kernel.source.read_bytes())
    flags = (*K.CXXFLAGS, *K._cpu_flags())
    monkeypatch.setattr(K, "HUGE_SOURCE_BYTES", 0)
    twin = K.Kernel(kernel.params, kernel.outputs, lambda variant: K._library(tmp_path, name, variant, flags),
                    tmp_path / kernel.source.name, kernel.n_core)
    lib = twin.lib("double")
    body = K._body(kernel.source.read_bytes())
    digest = getattr(lib, K.DIGEST_SYMBOL)
    digest.restype = ctypes.c_char_p
    assert digest().decode() == K.build_digest(body, K.compiler(), (*flags, "-DKERNEL_DOUBLE", "-O0"))
    slot = next(key for key, value in solver._compiled.items() if value is kernel)
    monkeypatch.setitem(solver._compiled, slot, twin)
    assert solver._kernel(solver.options.continuation) is twin
    again = solver.solve(params, throw=False, estimate_error=True)
    for q in QUANTITIES:
        assert np.array_equal(again.values[q], ref.values[q], equal_nan=True)
        assert np.array_equal(again.error[q], ref.error[q])
    assert np.array_equal(again.iterations, ref.iterations)
