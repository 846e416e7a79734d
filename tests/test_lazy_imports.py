"""Cheap imports: the packages load their heavy submodules (sympy, scipy) on first use only.

``import pencils; pencils.build("relu")`` must reach its first number fast on a warm cache,
so neither the packages nor a named activation may import sympy (about 0.35 s) or scipy
(about 0.25 s).  Each check runs in a fresh interpreter (``sys.modules`` of this process
is already full); the lazy names must still resolve to the same objects as before, and
the numbers of a named activation built without sympy must equal its symbolic forms.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

ROOT = Path(__file__).resolve().parents[1]

#: named activations whose numbers are all closed forms (kernel included)
CLOSED = ("relu", "abs", "linear", "quadratic", "erf", "gelu")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter at the project root; it prints one JSON object."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_HEAVY = "import json, sys\nheavy = lambda: sorted(m for m in ('sympy', 'scipy') if m in sys.modules)\n"


@pytest.mark.parametrize("package", ["pencils", "numerics", "derivations", "validation"])
def test_importing_a_package_loads_neither_sympy_nor_scipy(package):
    res = _run(_HEAVY + f"import {package}\nprint(json.dumps(heavy()))")
    assert res == []


def test_build_relu_loads_neither_sympy_nor_scipy():
    res = _run(_HEAVY + "import pencils\ntheory = pencils.build('relu')\n"
               "print(json.dumps({'heavy': heavy(), 'mu1': theory.coefficients.mu1}))")
    assert res["mu1"] == 0.5
    assert res["heavy"] == []


def test_warm_start_to_the_first_number_loads_no_sympy():
    """Second process on the same cache: the layout and the compiled kernel are on disk,
    so the first number needs neither sympy nor scipy (the first process derives)."""
    code = _HEAVY + ("import pencils\n"
                     "e = pencils.build('relu').errors(psi_n=2, psi_p=4, t=0.5, lam=1e-2, m=1)\n"
                     "print(json.dumps({'heavy': heavy(), 'test': float(e.test)}))")
    first = _run(code)
    second = _run(code)
    assert second["test"] == first["test"]
    assert 0.5 < second["test"] < 0.7
    if os.environ.get("DSM_KERNEL", "").lower() != "numpy":
        assert second["heavy"] == []


def test_named_activations_need_neither_sympy_nor_scipy():
    """Closed-form activations: every isotropic number, the kernel and (relu, abs and the
    polynomials) the structured-data constants; tanh and softplus (quadrature, mpmath only)."""
    code = _HEAVY + f"""
import mpmath
import numpy as np
from pencils import activation
c = np.linspace(-1, 1, 9); a = np.linspace(0, 1, 9)
out = {{}}
for name in {CLOSED!r}:
    act = activation(name)
    co = act.coefficients_mp(30)
    out[name] = dict(floats=[act.mu0, act.mu1, act.second_moment, act.mu_star_sq],
                     kernel=act.kernel(c).tolist(), mu_s_sq=act.mu_s_sq(a).tolist(),
                     mu_f_sq=act.mu_f_sq(a).tolist(),
                     iso=np.array(act.equivalence_constants(1.0, a)).tolist(),
                     mp=[mpmath.nstr(v, 40) for v in (co.mu0, co.mu1, co.second_moment, co.mu_star_sq)],
                     kernel_mp=[mpmath.nstr(act.kernel_mp(v), 40) for v in ("-1", "-0.3", "0.25", "1")])
    if name not in ("erf", "gelu"):  # their E rho(h)^2 needs Owen's T (scipy)
        out[name]["structured"] = np.array(act.equivalence_constants([0.5, 2.0], [0.2, 1.5])).tolist()
out["tanh"] = activation("tanh").mu0
out["softplus"] = activation("softplus").mu1
out["heavy"] = heavy()
print(json.dumps(out))
"""
    res = _run(code)
    assert res.pop("heavy") == []
    assert res.pop("tanh") == 0.0 and res.pop("softplus") == 0.5
    from pencils import activation

    c, a = np.linspace(-1, 1, 9), np.linspace(0, 1, 9)
    x, csym = sympy.Symbol("x"), sympy.Symbol("c")
    for name, got in res.items():
        act = activation(name)
        sym = act.symbolic
        # the symbolic path: the exact sympy forms evaluated at 50 digits
        exact = [sympy.N(v, 50) for v in (sym.mu0, sym.mu1, sym.second_moment, sym.mu_star_sq)]
        np.testing.assert_allclose(got["floats"], [float(v) for v in exact], rtol=0, atol=1e-14)
        kern = [float(sympy.N(sym.kernel.subs(csym, sympy.Rational(str(v))), 30)) for v in c]
        np.testing.assert_allclose(got["kernel"], kern, rtol=0, atol=1e-14)
        with mpmath.workdps(60):
            for s, e in zip(got["mp"], exact):
                assert abs(mpmath.mpf(s) - mpmath.mpf(str(e))) < mpmath.mpf(10) ** -35, (name, s, e)
            for s, v in zip(got["kernel_mp"], ("-1", "-0.3", "0.25", "1")):
                e = sympy.N(sym.kernel.subs(csym, sympy.Rational(v)), 50)
                assert abs(mpmath.mpf(s) - mpmath.mpf(str(e))) < mpmath.mpf(10) ** -35, (name, v, s, e)
        # mu_s^2 = K(a) - mu0^2 - mu1^2 a, from the symbolic kernel
        mu_s = [kern_a - float(exact[0]) ** 2 - float(exact[1]) ** 2 * v
                for kern_a, v in zip((float(sympy.N(sym.kernel.subs(csym, sympy.Rational(str(v))), 30))
                                      for v in a), a)]
        np.testing.assert_allclose(got["mu_s_sq"], mu_s, rtol=0, atol=1e-14)
        np.testing.assert_allclose(got["mu_f_sq"], float(exact[3]) - np.array(mu_s), rtol=0, atol=1e-14)
        # and this process (sympy loaded) gives the same numbers bit for bit
        assert got["iso"] == np.array(act.equivalence_constants(1.0, a)).tolist()
        if "structured" in got:
            assert got["structured"] == np.array(act.equivalence_constants([0.5, 2.0], [0.2, 1.5])).tolist()
        assert act.expr.free_symbols == {x}


def test_lazy_names_resolve_to_the_submodule_objects():
    import derivations
    import derivations.classic
    import derivations.theory
    import numerics
    import numerics.fixedpoint
    import numerics.mp
    import pencils
    import pencils.expr
    import pencils.freeprob
    import pencils.linearize  # binds nothing over the function pencils.linearize
    import validation
    import validation.simulation.extrapolate
    import validation.montecarlo

    assert pencils.gaussian is pencils.expr.gaussian
    assert pencils.linearize is sys.modules["pencils.linearize"].linearize
    assert pencils.FixedPointSystem is pencils.freeprob.FixedPointSystem
    assert numerics.compile is numerics.fixedpoint.compile
    assert numerics.ConvergenceError is numerics.fixedpoint.ConvergenceError
    assert numerics.solve_mp is numerics.mp.solve_mp
    assert derivations.ridge_risk is derivations.classic.ridge_risk
    assert derivations.DSMTheory is derivations.theory.DSMTheory
    assert derivations.closed_forms is sys.modules["derivations.closed_forms"]
    assert validation.extrapolate is sys.modules["validation.simulation.extrapolate"].extrapolate
    assert validation.simulate is validation.montecarlo.simulate
    from pencils import Pencil, trace  # the from-import form works too
    from validation import extrapolate

    assert Pencil is pencils.linearize.__globals__["Pencil"] and trace is pencils.expr.trace
    assert callable(extrapolate)
    for package in (pencils, numerics, derivations, validation):
        for name in package.__all__:
            assert getattr(package, name) is not None
        assert set(package.__all__) <= set(dir(package))
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018
