"""Expressions and automatic linearization: finite-size exactness of every pencil.

The realization ``D + U L^{-1} V`` of an expression is an exact matrix identity at
any finite size, so each pencil is checked by assembling it with concrete random
matrices and comparing with the directly evaluated expression.
"""
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from pencils import cache
from pencils.expr import D, Space, Trace, gaussian, identity, inverse, trace, zeros
from pencils.linearize import linearize

a_, b_ = sympy.symbols("a b", positive=True)
N_SP = Space("n", sympy.Rational(3, 2))
P_SP = Space("p", sympy.Rational(1, 2))
X = gaussian("X", N_SP, D)
A = gaussian("A", D, D, variance=2)
Wg = gaussian("W", P_SP, D)
SUBS = {a_: 0.7, b_: 1.9}
DREF = 8


def _size(space):
    return int(space.ratio * DREF)


def _mats(seed):
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((_size(N_SP), DREF)) / np.sqrt(DREF),
            "A": rng.standard_normal((DREF, DREF)) * np.sqrt(2 / DREF),
            "W": rng.standard_normal((_size(P_SP), DREF)) / np.sqrt(DREF)}


def _num(c):
    return complex(sympy.sympify(c).subs(SUBS))


def evaluate(e, mats):
    op, args = e.op, e.args
    if op == "gauss":
        return mats[args[0]]
    if op == "gaussT":
        return mats[args[0].args[0]].T
    if op == "eye":
        return _num(args[0]) * np.eye(_size(e.rows))
    if op == "add":
        out = np.zeros((_size(e.rows), _size(e.cols)), dtype=complex)
        for c, t in args:
            out = out + _num(c) * evaluate(t, mats)
        return out
    if op == "mul":
        out = evaluate(args[0], mats)
        for f in args[1:]:
            out = out @ evaluate(f, mats)
        return out
    if op == "scale":
        return _num(args[0]) * evaluate(args[1], mats)
    if op == "inv":
        return np.linalg.inv(evaluate(args[0], mats))
    raise AssertionError(op)


def assemble(pencil, mats):
    sizes = [_size(s) for s in pencil.spaces]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    L = np.zeros((off[-1], off[-1]), dtype=complex)
    for i in range(pencil.size):
        for j in range(pencil.size):
            blk = L[off[i]:off[i + 1], off[j]:off[j + 1]]
            if pencil.L0[i, j] != 0:
                blk += _num(pencil.L0[i, j]) * np.eye(sizes[i])
            for name, (_, E, F) in pencil.gaussians.items():
                if E[i, j] != 0:
                    blk += _num(E[i, j]) * mats[name]
                if F[i, j] != 0:
                    blk += _num(F[i, j]) * mats[name].T
    return L, sizes, off


def realized(pencil, mats):
    L, sizes, off = assemble(pencil, mats)
    Linv = np.linalg.inv(L) if pencil.size else L
    rows, cols = _size(pencil.rows), _size(pencil.cols)
    out = _num(pencil.D) * np.eye(rows, cols) if rows == cols else np.zeros((rows, cols), complex)
    for i in range(pencil.size):
        for j in range(pencil.size):
            u, v = _num(pencil.U[0, i]), _num(pencil.V[j, 0])
            if u != 0 and v != 0:
                out = out + u * v * Linv[off[i]:off[i + 1], off[j]:off[j + 1]]
    return out, Linv, off, sizes


def trace_readout(pencil, mats):
    _, Linv, off, sizes = realized(pencil, mats) if pencil.U is not None else (None, *_linv(pencil, mats))
    val = _num(pencil.constant)
    for i in range(pencil.size):
        for j in range(pencil.size):
            c = pencil.readout[i, j]
            if c != 0:
                val += _num(c) * np.trace(Linv[off[i]:off[i + 1], off[j]:off[j + 1]]) / sizes[i]
    return val


def _linv(pencil, mats):
    L, sizes, off = assemble(pencil, mats)
    return np.linalg.inv(L), off, sizes


R = inverse(X.T @ X * b_ + a_)
CASES = [
    X, X.T, X.T @ X, inverse(X.T @ X - a_), R @ R, R @ X.T @ X @ R, A @ A.T + b_,
    inverse(A), inverse(A @ A.T + a_ * A + 1), X @ inverse(X.T @ X + a_) @ X.T,
    inverse(X.T @ inverse(X @ X.T + b_) @ X + a_ * A.T @ A + 1), (A.T @ R) @ (A.T @ R).T,
    Wg.T @ inverse(Wg @ Wg.T + a_) @ Wg @ R, inverse(2 * (X.T @ X) ** 2 + 1),
]


@pytest.mark.parametrize("k", range(len(CASES)))
def test_pencil_realizes_expression_exactly(k):
    e = CASES[k]
    mats = _mats(k)
    direct = evaluate(e, mats)
    for reduce in (True, False):
        p = linearize(e, cache=False, reduce=reduce)
        got, *_ = realized(p, mats)
        assert np.allclose(got, direct, rtol=1e-9, atol=1e-9 * np.abs(direct).max())
        if e.is_square:
            tr = trace_readout(p, mats)
            assert abs(tr - np.trace(direct) / DREF) <= 1e-9 * max(1, abs(tr))


def test_reduction_shrinks_pencils():
    raw = linearize(inverse(X.T @ X - a_), cache=False, reduce=False)
    red = linearize(inverse(X.T @ X - a_), cache=False)
    assert raw.size == 5 and red.size == 2  # atoms 2 + 2, inverse + 1
    assert red.sizes_by_space() == {"n": 1, "d": 1}
    # a chain of k atoms needs k + 1 blocks
    assert linearize(X @ A @ A.T @ Wg.T, cache=False).size == 5
    # R R reuses the 2-block pencil of R twice
    assert linearize(trace(R @ R), cache=False).size == 2 * linearize(R, cache=False).size


def _square_exprs():
    leaves = st.sampled_from([X.T @ X, A, A.T, identity(D, 2), X.T @ inverse(X @ X.T + 1) @ X])

    def extend(children):
        return st.one_of(
            st.tuples(children, children).map(lambda t: t[0] + t[1]),
            st.tuples(children, children).map(lambda t: t[0] @ t[1]),
            children.map(lambda e: inverse(e @ e.T + 1)),
            children.map(lambda e: e.T),
            st.tuples(children, st.sampled_from([-1, a_, sympy.Rational(1, 3)])).map(lambda t: t[1] * t[0]),
        )
    return st.recursive(leaves, extend, max_leaves=5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_square_exprs(), st.integers(0, 10 ** 6))
def test_random_expressions_realized_exactly(e, seed):
    mats = _mats(seed)
    direct = evaluate(e, mats)
    assume(np.all(np.isfinite(direct)))
    p = linearize(e, cache=False)
    L, *_ = assemble(p, mats)
    assume(p.size == 0 or np.linalg.cond(L) < 1e8)
    got, *_ = realized(p, mats)
    assert np.allclose(got, direct, rtol=1e-7, atol=1e-7 * max(1.0, np.abs(direct).max()))


def test_trace_combinations_across_spaces():
    t = 2 * trace(X @ X.T) - trace(R) / 3 + 1
    assert isinstance(t, Trace)
    mats = _mats(5)
    direct = 2 * np.trace(mats["X"] @ mats["X"].T) / DREF - np.trace(evaluate(R, mats)) / DREF / 3 + 1
    p = linearize(t, cache=False)
    L, sizes, off = assemble(p, mats)
    Linv = np.linalg.inv(L)
    val = _num(p.constant) + sum(_num(p.readout[i, j]) * np.trace(Linv[off[i]:off[i + 1], off[j]:off[j + 1]]) / sizes[i]
                                 for i in range(p.size) for j in range(p.size) if p.readout[i, j] != 0)
    assert abs(val - direct) < 1e-10
    assert trace(identity(N_SP)).constant == sympy.Rational(3, 2)


def test_canonical_forms():
    assert (X.T @ X).T == X.T @ X
    assert (A @ Wg.T).T == Wg @ A.T
    assert A + X.T @ X == X.T @ X + A
    assert inverse(inverse(A)) == A
    assert (2 * A) - A == A
    assert A - A == zeros(D, D)
    assert inverse(A).T == inverse(A.T)
    assert hash(X.T @ X) == hash(X.T @ X)
    assert (A ** -2) == inverse(A) @ inverse(A)


@pytest.mark.parametrize("bad", [
    lambda: Space("n", -1), lambda: Space("n", 0), lambda: gaussian("X", D, D, variance=-2),
    lambda: gaussian("X", D, D, variance=sympy.Symbol("v", negative=True)),
    lambda: X @ X, lambda: X + A, lambda: inverse(X), lambda: trace(X), lambda: inverse(zeros(D, D)),
    lambda: X + 1, lambda: A / 0, lambda: linearize(3),
    lambda: linearize(gaussian("X", D, D) @ X.T),  # same name, two shapes
])
def test_bad_input_raises_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def test_pencil_latex_and_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSM_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    e = trace(R @ X.T @ X @ R)
    first = linearize(e)
    assert any(tmp_path.iterdir())
    cache.clear_memory()
    second = linearize(e)  # loaded from disk, rebuilt with fresh hashes
    assert second == first
    assert second.gaussians["X"][0] == X
    assert "matrix" in first.latex()
    cache.clear_memory()
