"""Models (§3.1, App. A): ViT and T5 v1.1 forward passes, relative positions, causality,
exact counting, sizing to a target N at sparsity S, and which layers are sparsified.

Expected numbers are computed by hand in the comments or by independent code in this file
(a scalar re-implementation of T5's bucket formula, brute-force width searches), never read
back from the code under test. Everything runs on the tiny "smoke" shapes.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigsparse_lib import models
from bigsparse_lib.errors import InputError
from bigsparse_lib.models import t5, vit


def vit_batch(c: vit.Config, B: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(B, c.image_size, c.image_size, c.channels)).astype(np.float32),
            "labels": (rng.random((B, c.num_classes)) < 0.3).astype(np.float32)}


def t5_batch(c: t5.Config, B: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(2, c.vocab_size, (B, c.input_length)).astype(np.int32)
    targets = rng.integers(2, c.vocab_size, (B, c.target_length)).astype(np.int32)
    inputs[0, -3:] = 0  # some padding, so the masks are exercised
    targets[0, -1] = 0
    return {"inputs": inputs, "targets": targets}


# One compiled program per (function, config): tests share these instead of running op by op.
apply_vit = jax.jit(vit.apply, static_argnums=2, static_argnames="dtype")
apply_t5 = jax.jit(t5.apply, static_argnums=3, static_argnames="dtype")


@functools.lru_cache(maxsize=None)
def loss_and_grad(family: str, config, dtype=jnp.float32):
    fam = models.get_family(family)
    return jax.jit(jax.value_and_grad(lambda p, b: fam.loss_fn(p, b, config, dtype=dtype)))


@pytest.fixture(scope="module")
def vit_smoke():
    c = vit.BASES["smoke"]
    return c, vit.init(c, jax.random.key(0))


@pytest.fixture(scope="module")
def t5_smoke():
    c = t5.BASES["smoke"]
    return c, t5.init(c, jax.random.key(0))


def ones_like_params(fam, config) -> dict:
    """Parameters of the right shapes without running (and compiling) the initialiser."""
    shapes = jax.eval_shape(lambda: fam.init(config, jax.random.key(0)))
    return jax.tree_util.tree_map(lambda s: np.ones(s.shape, np.float32), shapes)


def paths(tree) -> dict[str, object]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(k.key for k in kp): leaf for kp, leaf in flat}


# ---- shapes and forward passes ----------------------------------------------------------------

def test_vit_forward_shapes(vit_smoke):
    c, params = vit_smoke
    assert params["embedding"]["kernel"].shape == (c.patch_size, c.patch_size, c.channels, c.width)
    assert params["pos_embedding"].shape == (1, (c.image_size // c.patch_size) ** 2, c.width)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    b = vit_batch(c)
    logits = apply_vit(params, b["image"], c)
    assert logits.shape == (4, c.num_classes) and logits.dtype == jnp.float32
    # Zero-initialised head kernel (big_vision head_zeroinit): every logit is the head bias b, so the
    # loss is the sigmoid cross-entropy of the constant b (K log 2 at b = 0).
    loss, _ = loss_and_grad("vit", c)(params, b)
    bias = c.head_bias_init
    y = np.asarray(b["labels"], np.float64)
    want = np.mean(np.sum(y * math.log1p(math.exp(-bias)) + (1 - y) * math.log1p(math.exp(bias)), axis=1))
    assert float(loss) == pytest.approx(want, rel=1e-6)
    zero = dataclasses.replace(c, head_bias_init=0.0)
    loss0, _ = loss_and_grad("vit", zero)(vit.init(zero, jax.random.key(0)), b)
    assert float(loss0) == pytest.approx(c.num_classes * math.log(2.0), rel=1e-6)


def test_vit_head_bias_per_class():
    """A tuple head_bias_init gives each class its own starting bias (the toy preset's prior
    logits): with the zero-initialised head kernel every image's logits are that tuple."""
    c = dataclasses.replace(vit.BASES["smoke"], head_bias_init=tuple(-0.5 * k for k in range(8)))
    params = vit.init(c, jax.random.key(0))
    logits = apply_vit(params, vit_batch(c)["image"], c)
    assert np.asarray(logits) == pytest.approx(np.tile(-0.5 * np.arange(8), (4, 1)))
    with pytest.raises(InputError, match="3 values for 8 classes"):
        dataclasses.replace(c, head_bias_init=(0.0, 1.0, 2.0))


@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_vit_patch_embedding_is_the_strided_conv(preset):
    """`vit.PatchEmbedding` (a reshape and a matrix product) against big_vision's embedding as
    XLA computes it, a VALID p x p convolution of stride p, on the same kernel: values and the
    kernel's gradient agree to float32 rounding, and the parameters are the conv's."""
    c = vit.BASES[preset]
    p, C = c.patch_size, c.channels
    image = jax.random.normal(jax.random.key(0), (3, c.image_size, c.image_size, C))
    module = vit.PatchEmbedding(c.width, p)
    params = module.init(jax.random.key(1), image)["params"]
    assert params["kernel"].shape == (p, p, C, c.width) and params["bias"].shape == (c.width,)
    params = {"kernel": params["kernel"], "bias": jax.random.normal(jax.random.key(2), (c.width,))}

    def conv(kernel, bias):
        y = jax.lax.conv_general_dilated(image, kernel, (p, p), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return (y + bias).reshape(image.shape[0], -1, c.width)

    ours = module.apply({"params": params}, image)
    np.testing.assert_allclose(ours, conv(params["kernel"], params["bias"]), rtol=1e-5, atol=1e-5)
    g_ours = jax.grad(lambda k: jnp.sum(jnp.sin(module.apply({"params": {**params, "kernel": k}}, image))))(
        params["kernel"])
    g_conv = jax.grad(lambda k: jnp.sum(jnp.sin(conv(k, params["bias"]))))(params["kernel"])
    np.testing.assert_allclose(g_ours, g_conv, rtol=1e-4, atol=1e-4)


def test_t5_forward_shapes(t5_smoke):
    c, params = t5_smoke
    assert params["token_embedder"]["embedding"].shape == (c.vocab_size, c.d_model)
    assert params["decoder"]["logits_dense"]["kernel"].shape == (c.d_model, c.vocab_size)  # untied
    assert params["encoder"]["relpos_bias"]["rel_embedding"].shape == (c.num_heads, c.relative_attention_num_buckets)
    b = t5_batch(c)
    logits = apply_t5(params, b["inputs"], b["targets"], c)
    assert logits.shape == (4, c.target_length, c.vocab_size) and logits.dtype == jnp.float32
    # No biases anywhere in T5 v1.1.
    assert not [p for p in paths(params) if p.endswith("bias")]
    loss = float(loss_and_grad("t5", c)(params, b)[0])
    assert np.isfinite(loss) and 0.5 * math.log(c.vocab_size) < loss < 3 * math.log(c.vocab_size)


def test_t5_loss_is_mean_over_non_padding_targets(t5_smoke):
    c, params = t5_smoke
    b = t5_batch(c)
    logits = np.asarray(apply_t5(params, b["inputs"], b["targets"], c), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    tgt = b["targets"]
    nll = -np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
    expected = nll[tgt > 0].mean()
    assert float(loss_and_grad("t5", c)(params, b)[0]) == pytest.approx(float(expected), rel=1e-5)


def test_vit_loss_is_sigmoid_xent_summed_over_classes():
    logits = jnp.array([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    labels = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    per_example = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).sum(-1)
    assert float(vit.sigmoid_xent(logits, labels)) == pytest.approx(float(per_example.mean()), rel=1e-6)


@pytest.mark.parametrize("family", ["vit", "t5"])
def test_overfits_a_fixed_batch(family, request):
    c, params = request.getfixturevalue(f"{family}_smoke")
    batch = vit_batch(c) if family == "vit" else t5_batch(c)
    opt = optax.adam(3e-3)
    state = opt.init(params)
    losses = []
    for _ in range(30):
        loss, grads = loss_and_grad(family, c)(params, batch)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("family", ["vit", "t5"])
def test_bfloat16_compute_keeps_float32_params(family, request):
    c, params = request.getfixturevalue(f"{family}_smoke")
    # non-trivial head for ViT, so the loss depends on the backbone
    params = jax.tree_util.tree_map(lambda x: x + 0.01, params)
    batch = vit_batch(c) if family == "vit" else t5_batch(c)
    l32 = float(loss_and_grad(family, c)(params, batch)[0])
    l16, g16 = loss_and_grad(family, c, jnp.bfloat16)(params, batch)
    assert float(l16) == pytest.approx(l32, rel=3e-2)
    assert float(l16) != l32  # the bf16 path really computed in bf16
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(g16))


# ---- T5 relative positions and causality ------------------------------------------------------

def reference_bucket(rel: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """Scalar transcription of T5's `_relative_position_bucket` (Raffel et al., 2020; mesh TF)."""
    ret = 0
    n = -rel
    if bidirectional:
        num_buckets //= 2
        if n < 0:
            ret += num_buckets
        n = abs(n)
    else:
        n = max(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return ret + n
    large = max_exact + int(math.log(n / max_exact + 1e-7) / math.log(max_distance / max_exact)
                            * (num_buckets - max_exact))
    return ret + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 16)])
def test_relative_position_buckets_match_reference(bidirectional, num_buckets, max_distance):
    rel = np.arange(-300, 301)
    got = t5.relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=num_buckets,
                                      max_distance=max_distance)
    want = [reference_bucket(int(r), bidirectional, num_buckets, max_distance) for r in rel]
    np.testing.assert_array_equal(got, want)


def test_relative_position_buckets_hand_values():
    b = lambda r, bi: int(t5.relative_position_bucket(np.array(r), bidirectional=bi))  # noqa: E731
    # bidirectional, 32 buckets: keys before the query use 0..15, keys after use 16..31;
    # distances 0..7 are exact, 8..127 log-spaced over buckets 8..15, >= 128 share bucket 15.
    assert [b(0, True), b(-1, True), b(-7, True), b(1, True), b(7, True)] == [0, 1, 7, 17, 23]
    assert b(-8, True) == 8 and b(-127, True) == 15 and b(-1000, True) == 15 and b(1000, True) == 31
    # causal: future keys -> bucket 0; exact up to 15, log-spaced 16..31 up to 128.
    assert [b(5, False), b(-15, False), b(-16, False), b(-1000, False)] == [0, 15, 16, 31]


def test_decoder_is_causal_and_sees_the_encoder(t5_smoke):
    c, params = t5_smoke
    b = t5_batch(c)
    b["targets"][0, -1] = 7  # no padding, so every position is compared
    base = np.asarray(apply_t5(params, b["inputs"], b["targets"], c))
    for j in range(c.target_length - 1):
        t2 = b["targets"].copy()
        t2[:, j] = (t2[:, j] + 1) % (c.vocab_size - 2) + 2
        out = np.asarray(apply_t5(params, b["inputs"], t2, c))
        # logits at positions <= j only see targets < j (decoder inputs are shifted right)
        np.testing.assert_array_equal(out[:, : j + 1], base[:, : j + 1])
        assert np.abs(out[:, j + 1] - base[:, j + 1]).max() > 1e-6
    # the encoder is bidirectional and the decoder cross-attends: changing the LAST input
    # token changes the FIRST decoder logits.
    i2 = b["inputs"].copy()
    i2[1:, -1] = (i2[1:, -1] + 1) % (c.vocab_size - 2) + 2
    out = np.asarray(apply_t5(params, i2, b["targets"], c))
    assert np.abs(out[1:, 0] - base[1:, 0]).max() > 1e-6


# ---- counting ---------------------------------------------------------------------------------

def test_count_vit_by_hand():
    c = vit.Config(width=8, depth=2, mlp_dim=16, num_heads=2, patch_size=4, image_size=8, num_classes=3)
    # per block: q,k,v,out 4 * 8*8 = 256, MLP 8*16 + 16*8 = 256 -> 512; two blocks: 1024
    assert vit.dense_count(c) == 1024
    params = ones_like_params(vit, c)
    flags = vit.sparsifiable(params)
    assert models.count(params, flags) == (1024, 1024)
    # zero 5 entries of one kernel and 3 of another: 8 fewer non-zeros, same dense count
    k = params["Transformer"]["encoderblock_1"]["MlpBlock_0"]["Dense_0"]["kernel"]
    k[0, :5] = 0.0
    q = params["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"]
    q[2, :3] = 0.0
    params["head"]["kernel"] = params["head"]["kernel"] * 0  # not sparsified: must not count
    assert models.count(params, flags) == (1024, 1016)


def test_count_t5_by_hand():
    c = t5.Config(d_model=8, d_ff=12, num_heads=2, d_kv=3, num_layers=1, vocab_size=10,
                  relative_attention_num_buckets=4, relative_attention_max_distance=8,
                  input_length=5, target_length=3)
    # attention: q,k,v 8x6 and out 6x8 -> 4*48 = 192; gated MLP: 8x12 twice + 12x8 -> 288
    # encoder layer 192 + 288 = 480; decoder layer 2*192 + 288 = 672; total 1152
    assert t5.dense_count(c) == 1152
    params = ones_like_params(t5, c)
    flags = t5.sparsifiable(params)
    assert models.count(params, flags) == (1152, 1152)
    w = params["decoder"]["layers_0"]["encoder_decoder_attention"]["value"]["kernel"]
    w[:, 0] = 0.0  # 8 weights
    params["token_embedder"]["embedding"][0] = 0.0  # not sparsified: must not count
    assert models.count(params, flags) == (1152, 1144)


def test_uncounted_nonzeros_vit_by_hand():
    c = vit.Config(width=8, depth=2, mlp_dim=16, num_heads=2, patch_size=4, image_size=8, num_classes=3)
    patch = 4 * 4 * 3 * 8 + 8  # the strided conv's kernel and bias
    pos = 4 * 8  # (8 / 4)^2 patches, global-average pooling: no class token
    block = 2 * (2 * 8) + 4 * 8 + (16 + 8)  # two LayerNorms (scale, bias), q/k/v/out biases, MLP biases
    final = 2 * 8
    head = 8 * 3 + 3
    assert models.uncounted_nonzeros("vit", c) == patch + pos + 2 * block + final + head
    # ViT prunes only its backbone: the same count at any S
    assert models.uncounted_nonzeros(vit, c, 0.75) == patch + pos + 2 * block + final + head


def test_uncounted_nonzeros_t5_by_hand():
    c = t5.Config(d_model=8, d_ff=12, num_heads=2, d_kv=3, num_layers=1, vocab_size=10,
                  relative_attention_num_buckets=4, relative_attention_max_distance=8,
                  input_length=5, target_length=3)
    embed, logits = 10 * 8, 8 * 10  # token embedder and the untied output layer (T5 v1.1)
    relpos = 2 * (4 * 2)  # one bucket table per stack: buckets x heads
    norms = 8 * ((2 + 1) + (3 + 1))  # RMSNorm scales: encoder 2 per layer + final, decoder 3 + final
    assert models.uncounted_nonzeros("t5", c) == embed + logits + relpos + norms
    # at S = 0.75 both 80-weight vocab matrices keep a fraction sqrt(1 - S) = 1/2 (App. A: as many as
    # the dense model of the same N, half as wide, holds): 40 each
    assert models.uncounted_nonzeros("t5", c, 0.75) == 40 + 40 + relpos + norms


@pytest.mark.parametrize("family", ["vit", "t5"])
@pytest.mark.parametrize("preset", ["smoke", "toy", "full"])
def test_dense_count_matches_parameter_shapes(family, preset):
    fam = models.get_family(family)
    c = fam.BASES[preset]
    shapes = jax.eval_shape(lambda: fam.init(c, jax.random.key(0)))
    flags = fam.sparsifiable(shapes)
    n = sum(int(np.prod(x.shape)) for x, f in zip(jax.tree_util.tree_leaves(shapes),
                                                  jax.tree_util.tree_leaves(flags)) if f)
    assert n == fam.dense_count(c)


def test_full_bases_against_the_released_normaliser():
    # paper-data README: ViT BASE = 12 * (12 * 768**2); T5 BASE = 24 * (12 * 768**2)
    assert vit.BASES["full"].width == 768 and vit.BASES["full"].patch_size == 16
    assert vit.dense_count(vit.BASES["full"]) == 12 * (12 * 768**2)
    # T5 v1.1 base: encoder blocks are 12 d^2 (4 d^2 attention + 3 * 768 * 2048 = 8 d^2 MLP), decoder
    # blocks add 4 d^2 of cross-attention: 12*12 + 12*16 = 336 d^2 = 7/6 of the normaliser's 288 d^2.
    assert t5.dense_count(t5.BASES["full"]) == 336 * 768**2
    assert t5.dense_count(t5.BASES["full"]) * 6 == 7 * 24 * (12 * 768**2)
    assert t5.paper_normaliser(t5.BASES["full"]) == 24 * (12 * 768**2)


# ---- which layers are sparsified, and how much ------------------------------------------------

def test_sparsifiable_marks_exactly_the_vit_backbone_kernels(vit_smoke):
    params = vit_smoke[1]  # depth 1
    marked = {p for p, f in paths(vit.sparsifiable(params)).items() if f}
    blk = "Transformer/encoderblock_0"
    assert marked == {f"{blk}/MultiHeadDotProductAttention_0/{m}/kernel" for m in ("query", "key", "value", "out")} \
        | {f"{blk}/MlpBlock_0/Dense_0/kernel", f"{blk}/MlpBlock_0/Dense_1/kernel"}
    for p in marked:
        assert paths(params)[p].ndim == 2


def test_sparsifiable_marks_exactly_the_t5_backbone_kernels(t5_smoke):
    params = t5_smoke[1]  # one encoder and one decoder layer
    marked = {p for p, f in paths(t5.sparsifiable(params)).items() if f}
    qkvo = ("query", "key", "value", "out")
    mlp = ("wi_0", "wi_1", "wo")
    want = {f"encoder/layers_0/attention/{m}/kernel" for m in qkvo}
    want |= {f"decoder/layers_0/{a}/{m}/kernel" for a in ("self_attention", "encoder_decoder_attention") for m in qkvo}
    want |= {f"{s}/layers_0/mlp/{m}/kernel" for s in ("encoder", "decoder") for m in mlp}
    assert marked == want
    for p in marked:
        assert paths(params)[p].ndim == 2


def test_reduction_dimension_is_axis_0(t5_smoke):
    # n:m groups run along axis 0, which must be the input (reduction) dimension: for T5 smoke,
    # wo maps d_ff=64 -> d_model=24, and logits_dense maps d_model -> vocab.
    params = t5_smoke[1]
    assert params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"].shape == (64, 24)
    x = jnp.ones((1, 1, 24))
    assert (x @ params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]).shape == (1, 1, 64)


def test_vit_target_sparsities(vit_smoke):
    tree = paths(vit.target_sparsities(vit.BASES["smoke"], 0.75))
    flags = paths(vit.sparsifiable(vit_smoke[1]))
    assert tree.keys() == flags.keys()
    assert all(v == (0.75 if flags[p] else 0.0) for p, v in tree.items())


@pytest.mark.parametrize("N", [5.3e6, 85e6])
@pytest.mark.parametrize("S", [0.5, 0.75, 0.875])
def test_t5_embedding_sparsity_matches_a_smaller_dense_model(S, N):
    # App. A: the embeddings are sparsified "to the amount necessary for parameter matching a smaller
    # dense version". Build the sparse model for (N, S) and the dense model holding the sparse one's
    # exact non-zero count; the sparse embeddings must keep as many weights as the dense ones hold.
    sparse = models.config_for_nnz("t5", "full", N, S)
    dense = models.config_for_nnz("t5", "full", t5.dense_count(sparse) * (1 - S), 0.0)
    tree = paths(t5.target_sparsities(sparse, S))
    S_emb = tree["token_embedder/embedding"]
    assert tree["decoder/logits_dense/kernel"] == S_emb
    kept_width = sparse.d_model * (1 - S_emb)  # non-zeros per vocabulary row
    # the dense width is the nearest whole-head (12) width, so within half a step of 12
    assert abs(kept_width - dense.d_model) <= 6.0
    flags = paths(t5.sparsifiable(jax.eval_shape(lambda: t5.init(sparse, jax.random.key(0)))))
    for p, v in tree.items():
        if flags[p]:
            assert v == S
        elif p not in ("token_embedder/embedding", "decoder/logits_dense/kernel"):
            assert v == 0.0, p


# ---- sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["vit", "t5"])
@pytest.mark.parametrize("preset", ["smoke", "toy", "full"])
def test_scale_width_changes_only_the_hidden_dimension(family, preset):
    fam = models.get_family(family)
    base = fam.BASES[preset]
    assert fam.scale_width(base, 1.0) == base
    big = fam.scale_width(base, 2.0)
    hidden = {"width", "mlp_dim"} if family == "vit" else {"d_model", "d_ff", "d_kv"}
    for f in dataclasses.fields(base):
        if f.name not in hidden:
            assert getattr(big, f.name) == getattr(base, f.name), f.name
    # every hidden size doubles exactly, so the backbone count quadruples
    assert all(getattr(big, h) == 2 * getattr(base, h) for h in hidden)
    assert fam.dense_count(big) == 4 * fam.dense_count(base)


def test_scale_width_rounds_to_whole_heads():
    c = vit.scale_width(vit.BASES["full"], 0.1)  # 76.8 -> 72 (multiple of 12 heads)
    assert (c.width, c.mlp_dim, c.num_heads) == (72, 288, 12)
    c = t5.scale_width(t5.BASES["full"], 0.5)  # 384: d_kv 32, d_ff 1024
    assert (c.d_model, c.d_kv, c.d_ff, c.num_heads) == (384, 32, 1024, 12)


CASES = [("vit", "full", 0.66e6, 0.0), ("vit", "full", 5.3e6, 0.5), ("vit", "full", 42.4e6, 0.875),
         ("vit", "full", 1.33e6, 0.9375), ("t5", "full", 1.3e6, 0.875), ("t5", "full", 85e6, 0.0),
         ("t5", "full", 21.2e6, 0.75), ("vit", "toy", 12_000, 0.5), ("t5", "toy", 24_000, 0.75),
         ("vit", "smoke", 3_000, 0.0), ("t5", "smoke", 6_000, 0.5)]


@pytest.mark.parametrize("family,preset,N,S", CASES)
def test_config_for_nnz_hits_the_target(family, preset, N, S):
    fam = models.get_family(family)
    base = fam.BASES[preset]
    cfg = models.config_for_nnz(family, preset, N, S)
    target = N / (1 - S)
    err = abs(math.log(fam.dense_count(cfg) / target))
    # independent brute force over every whole-head width up to 4x the base: none is closer
    step = base.num_heads
    hidden = fam.hidden_size(base)
    widths = range(step, 4 * hidden + 1, step)
    best = min(abs(math.log(fam.dense_count(fam.with_width(base, w)) / target)) for w in widths)
    assert err == pytest.approx(best, abs=1e-12)
    # and the rounding error is what one head-step of width allows: count ~ w^2, so a
    # half step changes it by about (1 + step / (2 w))^2
    w = fam.hidden_size(cfg)
    assert err <= 2 * math.log1p(step / (2 * w)) + 1e-9
    # only hidden sizes differ from the base
    hidden = ("width", "mlp_dim") if family == "vit" else ("d_model", "d_ff", "d_kv")
    assert dataclasses.replace(cfg, **{k: getattr(base, k) for k in hidden}) == base


NM_CASES = [("t5", "toy", N, S, m) for N in (14_000, 28_000, 56_000, 112_000) for S, m in ((0.5, 4), (0.75, 8))] + \
    [("vit", "toy", 6_000, 0.5, 8), ("t5", "smoke", 3_000, 0.5, 4), ("t5", "full", 24.8e6, 0.5, 8)]


@pytest.mark.parametrize("family,preset,N,S,m", NM_CASES)
def test_config_for_nnz_with_a_group_splits_every_kernel_into_groups_of_m(family, preset, N, S, m):
    import jax

    fam = models.get_family(family)
    base = fam.BASES[preset]
    cfg = models.config_for_nnz(family, preset, N, S, group=m)
    shapes = jax.eval_shape(lambda k: fam.init(cfg, k), jax.random.key(0))
    rows = [x.shape[0] for x, f in zip(jax.tree.leaves(shapes), jax.tree.leaves(fam.sparsifiable(shapes))) if f]
    assert rows and all(r % m == 0 for r in rows)  # Algorithm 1's groups run along axis 0
    # the inner dimension stays within half a group of its proportion to the width
    w = fam.hidden_size(cfg)
    inner, ratio = (cfg.d_ff, base.d_ff / base.d_model) if family == "t5" else (cfg.mlp_dim, base.mlp_dim / base.width)
    assert abs(inner - w * ratio) <= m / 2
    # and N lands near its target: the width steps by lcm(heads, m), count ~ w^2
    step = math.lcm(base.num_heads, m)
    assert abs(math.log(fam.dense_count(cfg) * (1 - S) / N)) <= 2 * math.log1p(step / w) + 1e-9


def test_config_for_nnz_group_1_is_the_unstructured_model():
    for family, preset, N, S in CASES:
        assert models.config_for_nnz(family, preset, N, S, group=1) == models.config_for_nnz(family, preset, N, S)
    # T5's d_ff = 8/3 d_model is rounded to whole groups only for n:m models. The toy T5 (one layer
    # per stack) holds 12 d^2 + 6 d d_ff weights: 7,200 at d_model 16 and d_ff round(42.67) = 43.
    # In groups of 8 the width steps by lcm(2 heads, 8) = 8, so d_model stays 16 and d_ff is 40.
    assert (models.config_for_nnz("t5", "toy", 7_200, 0.0).d_model, models.config_for_nnz("t5", "toy", 7_200, 0.0).d_ff) == (16, 43)
    assert models.config_for_nnz("t5", "toy", 7_200, 0.0, group=8).d_ff == 40
    assert models.config_for_nnz("t5", "toy", 7_200, 0.0, group=np.int64(8)).d_ff == 40
    for bad in (0, -4, 4.0, "4"):
        with pytest.raises(InputError, match="group"):
            models.config_for_nnz("t5", "toy", 14_400, 0.0, group=bad)


def test_config_for_nnz_accepts_a_base_config_and_family_module():
    base = t5.BASES["toy"]
    assert models.config_for_nnz(t5, base, 24_000, 0.75) == models.config_for_nnz("t5", "toy", 24_000, 0.75)


@pytest.mark.parametrize("nnz,S", [(0, 0.0), (-5, 0.5), (float("nan"), 0.0), (float("inf"), 0.0),
                                   ("many", 0.0), (1e6, 1.0), (1e6, -0.1), (10, 0.0), (100, 0.5)])
def test_config_for_nnz_rejects_bad_input(nnz, S):
    with pytest.raises(InputError):
        models.config_for_nnz("vit", "full", nnz, S)


def test_bad_family_and_preset_raise_input_error():
    with pytest.raises(InputError):
        models.get_family("resnet")
    with pytest.raises(InputError):
        models.config_for_nnz("t5", "huge", 1e6, 0.0)
    with pytest.raises(InputError):
        vit.scale_width(vit.BASES["toy"], 0.0)
    with pytest.raises(InputError):
        vit.Config(width=10, num_heads=4)
