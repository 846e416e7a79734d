"""The code generation package (numerics.codegen) and the solver vocabulary (numerics.options):
the hand-written C++ ships as package data, the printers emit what the solvers run, and
every backend of the reduced solver speaks SolveOptions / ReducedSolution / Result."""
import tomllib
from importlib import resources
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

from numerics import Result, SolveOptions, codegen
from numerics.codegen.cxx import kernel_source, operation_counts
from numerics.codegen.python import reduced_source
from numerics.reduced import compile_reduced
from pencils.expr import D, Space, gaussian, inverse, trace
from pencils.freeprob import equations
from pencils.reduce import reduce_systems

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ridge():
    """Marchenko--Pastur with its ridge named ``rho`` (the continuation parameter is declared)."""
    g, rho = sympy.symbols("gamma rho", positive=True)
    X = gaussian("X", Space("n", 1 / g), D)
    return reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + rho)))})


def test_runtime_files_are_package_data():
    for name in codegen.RUNTIME_FILES:
        assert resources.files("numerics.codegen").joinpath(name).is_file(), name
        assert codegen.runtime_text(name).strip()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert set(data["numerics.codegen"]) >= {"*.h", "*.hpp"}
    assert len(codegen.runtime_digest()) == 64


def test_kernel_source_pastes_the_runtime_and_one_struct_per_stage(ridge):
    src = kernel_source(ridge)
    for name in codegen.RUNTIME_FILES:
        assert codegen.runtime_text(name) in src
    cores = [k for k, (kind, _) in enumerate(ridge.segments) if kind == "core"]
    for k in cores:
        assert f"struct stage_{k} {{" in src and f"solve_stage<T, stage_{k}>" in src
    counts = operation_counts(src)
    assert all(counts[f"map_{k}"] > 0 and counts[f"jac_{k}"] > counts[f"map_{k}"] for k in cores)


def test_the_runtime_buffers_grow_with_a_core_above_kmax():
    """A core stage of more than KMAX unknowns (two spikes at rank 4: 49) gets buffers of its
    own size; every smaller system pastes the runtime unchanged (its kernel is not rebuilt)."""
    from types import SimpleNamespace

    from numerics.codegen.cxx import KMAX_LIMIT, _runtime

    def segments(*cores):
        return [("let", [])] + [("core", SimpleNamespace(unknowns=list(range(K)))) for K in cores]

    text = codegen.runtime_text("runtime.h")
    assert _runtime(segments(3, codegen.KMAX)) == text
    big = _runtime(segments(5, codegen.KMAX + 1))
    assert big != text and f"KMAX = {codegen.KMAX + 1};" in big and f"KMAX = {codegen.KMAX};" not in big
    assert big.replace(f"KMAX = {codegen.KMAX + 1};", f"KMAX = {codegen.KMAX};") == text
    assert KMAX_LIMIT > codegen.KMAX


def test_python_printer_defines_the_program(ridge):
    for backend in ("numpy", "mpmath"):
        ns = {"numpy": np, "mpmath": mpmath}
        exec(reduced_source(ridge, backend), ns)
        for k, (kind, _) in enumerate(ridge.segments):
            names = [f"seg_{k}"] if kind == "let" else [f"map_{k}", f"jac_{k}", f"fill_{k}"]
            assert all(callable(ns[n]) for n in names)
        assert callable(ns["outputs"])


def test_segments_are_the_reduced_systems_own(ridge):
    kinds = [kind for kind, _ in ridge.segments]
    assert "core" in kinds
    assert sum(len(body) for kind, body in ridge.segments if kind == "let") == \
        sum(1 for kind, *_ in ridge.steps if kind == "let")


@pytest.mark.parametrize("backend", ["numpy", "kernel"])
def test_result_codes_and_the_declared_continuation(ridge, backend):
    solver = compile_reduced(ridge)
    params = dict(gamma=0.5, rho=[1e-3, 1.0])
    sol = solver.solve(params, backend=backend, continuation="rho")
    assert sol.converged.all() and np.all(sol.result == Result.OK)
    starved = solver.solve(params, backend=backend, throw=False, fp_maxiter=0, newton_maxiter=0)
    assert not starved.converged.any() and set(starved.result.tolist()) <= {Result.MAX_STEPS, Result.REPELLING}
    assert np.isnan(starved.values["mp"]).all()
    with pytest.raises(TypeError):
        SolveOptions().replace(maxiter=3)  # the old name is gone: fp_maxiter / newton_maxiter


def test_mpmath_stage_speaks_the_same_vocabulary(ridge):
    solver = compile_reduced(ridge)
    sol = solver.solve(dict(gamma=0.5, rho=0.3))
    mp = solver.solve_mp(dict(gamma=0.5, rho=0.3), 30, init=list(sol.core))
    assert mp.result == Result.REFINED_MP and mp.converged
    assert mp.residual < mpmath.mpf(10) ** -25 and mp.iterations >= 1
    assert abs(float(mp.values["mp"]) - float(sol.values["mp"])) <= 1e-13


def test_means_of_one_measure_share_one_loop(monkeypatch):
    """A core stage's Jacobian reads its means and their derivatives by every unknown: each
    function computes all of them in one loop per measure (the per-atom program once per atom,
    not once per mean), and the kernel agrees with the numpy printer, which has no loops."""
    import re

    import pencils
    from pencils.expr import S_NU, coordinate, profile, spectral

    psi, lam = sympy.symbols("psi lam", positive=True)
    n = Space("n", psi)
    X = gaussian("X", n, D)
    root = spectral(sympy.sqrt(S_NU))
    expr = {"m": trace(inverse(root @ X.T @ profile(coordinate("c", 0), n) @ X @ root + lam))}
    model = pencils.derive(expr)
    bodies = kernel_source(model.reduced, "lam").split("template <typename T> static ")[1:]
    loops = [b.count("for (int _a") for b in bodies]
    means = [len(re.findall(r"\bT _mean\d+ = T\(0\.0\);", b)) for b in bodies]
    assert max(loops) <= 2  # two measures, "c" and "nu"
    assert sum(means) > sum(loops)  # several means per loop somewhere
    spectrum = {"c": (np.array([[0.5], [2.0], [3.5]]), np.array([0.3, 0.5, 0.2])),
                "nu": (np.array([0.4, 1.0, 2.5]), np.array([0.25, 0.5, 0.25]))}
    lams = np.array([1e-2, 0.3, 3.0])
    kernel = model.solve(psi=1.3, lam=lams, spectrum=spectrum)["m"]
    monkeypatch.setenv("DSM_KERNEL", "numpy")
    plain = pencils.derive(expr).solve(psi=1.3, lam=lams, spectrum=spectrum)["m"]
    np.testing.assert_allclose(kernel, plain, rtol=1e-12)
