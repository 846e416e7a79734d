"""The reduction's own symbolic primitives (`pencils.measures.partial`, `replace_exact`) give
exactly the expressions sympy's `diff` and `xreplace` give: the reduced programs, and so every
cached derivation, must not depend on which one built them.  Random rational expressions
(sums, products, integer and half powers, shared sub-expressions) and spectral means with
per-atom let-programs."""
import sympy
from hypothesis import given, settings, strategies as st

from pencils.measures import SpectralMean, coordinate, mean_of, partial, replace_exact

X = sympy.symbols("x0:4", positive=True)
C = coordinate("c", 0)
LEAVES = list(X) + [C, sympy.Integer(2), sympy.Rational(-3, 5)]


@st.composite
def expressions(draw, depth=4):
    """A random rational expression; children may repeat (a DAG, as in the reduction)."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(LEAVES))
    kind = draw(st.sampled_from(["add", "mul", "pow", "half"]))
    kids = draw(st.lists(expressions(depth=depth - 1), min_size=2, max_size=3))
    if kind == "add":
        return sympy.Add(*kids, kids[0])
    if kind == "mul":
        return sympy.Mul(*kids)
    if kind == "pow":
        return kids[0] ** draw(st.sampled_from([-2, -1, 2, 3]))
    return (kids[0] + kids[1] ** 2 + 1) ** sympy.Rational(draw(st.sampled_from([1, -1])), 2)


def _mean(body, lets):
    """``E_c[body]`` with let-bound ``y_k`` (each may read the earlier ones)."""
    ys = sympy.symbols(f"y0:{len(lets)}")
    bound = [(y, e.xreplace({X[3]: ys[k - 1]}) if k else e) for k, (y, e) in enumerate(zip(ys, lets))]
    return mean_of(body.xreplace({X[2]: ys[-1]}) * C, tuple(bound))


@settings(max_examples=150, deadline=None)
@given(expressions(), st.sampled_from(X[:2]))
def test_partial_is_sympy_diff(e, x):
    assert partial(e, x) == sympy.diff(e, x)


@settings(max_examples=60, deadline=None)
@given(expressions(depth=3), st.lists(expressions(depth=3), min_size=1, max_size=3), st.sampled_from(X[:2]))
def test_partial_of_a_mean_is_the_mean_of_the_derivative(body, lets, x):
    m = _mean(body, lets)
    d = partial(m, x)
    assert d == sympy.diff(m, x)
    if isinstance(m, SpectralMean):  # d/dx E[f] = E[df/dx] through the bindings, at one point
        env = {X[0]: sympy.Rational(3, 7), X[1]: sympy.Rational(5, 3), X[2]: sympy.Rational(2, 9), X[3]: 2, C: sympy.Rational(1, 4)}

        def inline(mean, point):
            out = {**point}
            for sym, e in mean.lets:
                out[sym] = e.xreplace(out)
            return mean.args[0].xreplace(out)

        f = inline(m, {**env, x: x})
        expected = sympy.diff(f, x).xreplace(env)
        got = inline(d, env) if isinstance(d, SpectralMean) else d.xreplace(env)
        if expected.is_finite and got.is_finite:
            assert sympy.simplify(got - expected) == 0


@settings(max_examples=150, deadline=None)
@given(expressions(), st.dictionaries(st.sampled_from(X), expressions(depth=2), min_size=1, max_size=3))
def test_replace_exact_is_xreplace_on_symbols(e, rule):
    assert replace_exact(e, rule) == e.xreplace(rule)


@settings(max_examples=100, deadline=None)
@given(expressions(), expressions(depth=2))
def test_replace_exact_is_xreplace_on_roots(e, value):
    """Expression keys (the reduction replaces square roots of parameters by symbols)."""
    key = sympy.sqrt(X[0] + X[1])
    e = e + key * e + 1 / key
    assert replace_exact(e, {key: value, 1 / key: 1 / value}) == e.xreplace({key: value, 1 / key: 1 / value})


def test_replace_exact_enters_a_mean_through_its_free_symbols_only():
    m = _mean(X[0] * X[2], [X[1] + C, X[0] * X[3]])
    assert replace_exact(m, {X[0]: X[1] ** 2}) == m.xreplace({X[0]: X[1] ** 2})
    assert replace_exact(m, {X[3]: 5}) is m  # x3 is replaced by a bound symbol inside the mean



def test_replace_exact_rebuilds_an_expression_once():
    """A definition substituted again (another component of a reduction) comes back as the same
    objects, its inner nodes included, even after sympy's own construction cache has dropped them
    (1000 entries; a reduction builds millions): sympy compares two independent rebuilds node by
    node wherever it meets them, which was most of the time of the m = 4 two-spike reduction."""
    from sympy.core.cache import clear_cache

    y = sympy.Symbol("y_rebuilt")
    inner = [(X[0] * X[k] + 1) ** -1 * (X[1] + X[k]) ** sympy.Rational(1, 2) for k in range(1, 4)]
    e = sympy.Add(*inner)
    first = replace_exact(e, {X[0]: y})
    assert first == e.xreplace({X[0]: y})
    clear_cache()
    assert replace_exact(e, {X[0]: y}) is first
    clear_cache()
    assert any(replace_exact(inner[1], {X[0]: y}) is a for a in first.args)
