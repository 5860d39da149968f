"""bench/step_ceiling.py: the products it finds in a step and the FLOPs it gives them.

The ceiling it prints is (XLA's FLOPs of a step) / (the bare time of the step's products), so it is
only as right as the list of products: these check it against functions whose products are known,
and the FLOP count against XLA's own cost analysis.
"""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import step_ceiling as sc  # noqa: E402
from train_step import xla_flops  # noqa: E402


def test_forward_and_backward_products_of_a_dense_layer():
    x, w = jnp.ones((8, 5)), jnp.ones((5, 3))
    loss = lambda w, x: jnp.sum(x @ w)  # noqa: E731
    found = sc.dot_products(jax.make_jaxpr(jax.grad(loss))(w, x).jaxpr)
    # forward x @ w, and the weight gradient x^T g (the input gradient is not asked for)
    assert sum(found.values()) == 2
    operands = sorted(sorted([k[0], k[1]]) for k in found)
    assert operands == sorted([sorted([(8, 5), (5, 3)]), sorted([(8, 3), (8, 5)])])
    assert sum(n * sc.dot_flops(k) for k, n in found.items()) == 2 * (2 * 8 * 5 * 3)


def test_flops_of_batched_products_match_xla():
    a, b = jnp.ones((4, 7, 6)), jnp.ones((4, 6, 9))
    f = lambda a, b: jnp.einsum("bik,bkj->bij", a, b)  # noqa: E731
    found = sc.dot_products(jax.make_jaxpr(f)(a, b).jaxpr)
    assert list(found.values()) == [1]
    (key,) = found
    assert sc.dot_flops(key) == 2 * 4 * 7 * 6 * 9 == xla_flops(jax.jit(f), a, b)


def test_products_inside_a_scan_count_its_length():
    w = jnp.ones((6, 6))

    def f(w):
        return lax.scan(lambda h, _: (jnp.tanh(h @ w), None), jnp.ones((2, 6)), None, length=5)[0]

    found = sc.dot_products(jax.make_jaxpr(f)(w).jaxpr)
    assert sum(found.values()) == 5


def test_products_inside_a_jit_are_found():
    f = jax.jit(lambda a, b: a @ b)
    found = sc.dot_products(jax.make_jaxpr(lambda a, b: f(a, b) + 1)(jnp.ones((3, 4)), jnp.ones((4, 2))).jaxpr)
    assert sum(found.values()) == 1


def test_a_product_in_a_while_loop_is_refused():
    def f(w):
        return lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] @ w), (0, jnp.ones((2, 2))))[1]

    with pytest.raises(ValueError, match="while loop"):
        sc.dot_products(jax.make_jaxpr(f)(jnp.ones((2, 2))).jaxpr)


def test_bare_seconds_runs_the_product_of_a_signature():
    key = ((16, 8), (8, 4), "float32", (((1,), (0,)), ((), ())))
    s = sc.bare_seconds(key, 3)
    assert 0 < s < 10  # a time, per product (no assertion on its size: shared machines are noisy)
    with pytest.raises(TypeError):  # operands of the wrong shapes for the dimension numbers
        sc.bare_seconds(((16, 8), (7, 4), "float32", (((1,), (0,)), ((), ()))), 1)
