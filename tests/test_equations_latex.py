"""The reduction's merge of identical cores and the eliminated form of the equations
(pencils.reduce, pencils.latex):

* two core stages that are the same equations with their unknowns in another order are one
  stage (random features: two copies of its resolvent core, 4 Newton unknowns before);
* Marchenko-Pastur and ridge reduce to one unknown, random features to two (Mei-Montanari's
  count);
* the printed eliminated equations are the program's: at the solved core, their residual
  vanishes and their read-outs give the solver's values.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from derivations import classic
from numerics.reduced import compile_reduced
from pencils.latex import eliminate
from pencils.reduce import reduce_systems

POINTS = {
    "marchenko_pastur": lambda rng, k: {"gamma": rng.uniform(0.2, 3, k), "z": -10 ** rng.uniform(-2, 1, k)},
    "ridge": lambda rng, k: {"gamma": rng.uniform(0.2, 3, k), "lam": 10 ** rng.uniform(-2, 1, k),
                             "r2": rng.uniform(0.5, 2, k), "sigma2": rng.uniform(0, 1, k)},
    "random_features": lambda rng, k: {"psi_p": rng.uniform(0.2, 3, k), "psi_n": rng.uniform(0.2, 3, k),
                                       "lam": 10 ** rng.uniform(-2, 0, k), "mu1": rng.uniform(0.3, 1, k),
                                       "mustar": rng.uniform(0.2, 1, k), "r2": rng.uniform(0.5, 2, k),
                                       "sigma2": rng.uniform(0, 1, k)},
}


def _reduced(name):
    return reduce_systems({name: classic.system(name)})


@pytest.mark.parametrize("name,core", [("marchenko_pastur", 1), ("ridge", 1), ("random_features", 2)])
def test_core_sizes(name, core):
    R = _reduced(name)
    stages = [st for kind, st, *_ in R.steps if kind == "core"]
    assert R.sizes["core"] == core and len(stages) == 1


def test_identical_cores_with_permuted_unknowns_merge():
    """The random-features trace reads its resolvent twice: the pencil has two copies of
    its core whose unknowns come in another order.  They are one stage."""
    S = classic.system("random_features")
    nonlinear = [c for c, lin in zip(S.components, S.linear) if not lin]
    assert len(nonlinear) == 2 and len(nonlinear[0]) == len(nonlinear[1]) == 4
    R = _reduced("random_features")
    (stage,) = [st for kind, st, *_ in R.steps if kind == "core"]
    assert len(stage.unknowns) + len(stage.eliminated) == 4


@pytest.mark.parametrize("name", sorted(POINTS))
def test_eliminated_equations_are_the_programs(name):
    R = _reduced(name)
    E = eliminate(R)
    params = POINTS[name](np.random.default_rng(4), 12)
    sol = compile_reduced(R).solve(params, continuation="lam")
    assert sol.converged.all()
    for i in range(12):
        pt = {k: float(v[i]) for k, v in params.items()}
        u = sol.core[i]
        nu = [complex(x) / complex(sympy.sympify(c).xreplace(
            {s: pt[s.name] for s in sympy.sympify(c).free_symbols})) for x, c in zip(u, E.scale)]
        res = E.residuals(pt, nu)
        assert max(abs(r) for r in res) <= 1e-9 * max(1.0, max(abs(v) for v in nu))
        if E.outputs:
            got = E.output_values(pt, nu)[name]
            assert abs(got - sol.values[name][i]) <= 1e-9 * max(1.0, abs(sol.values[name][i]))
    assert name == "random_features" or E.outputs  # MP and ridge print their read-outs


def test_a_wrong_point_does_not_satisfy_the_printed_equations():
    R = _reduced("random_features")
    E = eliminate(R)
    pt = {"psi_p": 1.3, "psi_n": 0.7, "lam": 0.1, "mu1": 0.5, "mustar": 0.6, "r2": 1.0, "sigma2": 0.2}
    sol = compile_reduced(R).solve({k: np.array([v]) for k, v in pt.items()})
    nu = [complex(x) / complex(sympy.sympify(c).xreplace({s: pt[s.name] for s in sympy.sympify(c).free_symbols}))
          for x, c in zip(sol.core[0], E.scale)]
    assert max(abs(r) for r in E.residuals(pt, nu)) < 1e-10
    assert max(abs(r) for r in E.residuals(pt, [v * 1.01 for v in nu])) > 1e-4


def test_latex_default_is_eliminated_and_the_program_stays_available():
    R = _reduced("ridge")
    tex, prog, full = R.latex(), R.latex(program=True), R.latex(full=True)
    assert r"\nu_{1}" in tex and "Newton" in tex and "y_{" not in tex
    assert r"\operatorname{tr}" in tex
    assert "straight-line" in prog and len(full) > len(prog)
    assert len(tex) < len(prog)
