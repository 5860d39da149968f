"""T5 v1.1 encoder-decoder for span-corruption pretraining (§3.1, App. A), in the shape of T5X.

Mirrors `t5x/examples/t5/network.py` + `layers.py` (the codebase of the paper's T5 runs, via the
authors' `jaxpruner/projects/bigsparse/t5x/network.py`): RMSNorm ("T5 LayerNorm": scale only, no
mean subtraction), gated-GELU MLP (`wi_0`, `wi_1`, `wo`), no biases anywhere, relative position
biases (32 log-spaced buckets up to distance 128, bidirectional in the encoder, causal in the
decoder, one table per stack shared by its layers), a token embedding shared by encoder and decoder
inputs, and an *untied* output projection `decoder/logits_dense`. Attention logits are not divided
by sqrt(d_kv); as in T5X the query kernel's initialisation is scaled down instead.

Every attention projection is a 2-D `[in, out]` kernel (T5X keeps `[embed, heads, d_kv]`); heads
are a reshape inside the module, so axis 0 of every sparsified kernel is the reduction dimension.

Sizes (App. A): `BASES["full"]` is t5-v1_1-base. `scale_width` scales only the hidden dimension:
d_model, d_ff and the attention inner size (num_heads * d_kv) in proportion; number of heads,
layers, vocabulary and relative-position settings stay fixed.

Counting, and how the released data's normaliser relates to this model (exact for t5-base):
  encoder block: q,k,v,o 4 d^2 + MLP 3 d d_ff = 4 d^2 + 8 d^2 = 12 d^2   (d_ff = 2048 = 8/3 * 768)
  decoder block: self-attn 4 d^2 + cross-attn 4 d^2 + MLP 8 d^2 = 16 d^2
  total 12 * 12 d^2 + 12 * 16 d^2 = 336 d^2, whereas the released data use
  BASE = 24 * 12 d^2 = 288 d^2: the normaliser leaves out the decoder's cross-attention,
  so the real backbone of a released run is 7/6 of its nominal N. Our engine counts exactly.

Another difference from the authors' code: their `TransformerW` multiplies emb_dim, mlp_dim *and*
num_heads by `width` (truncating with int(), head_dim fixed at 64), so small models have 1-2 heads
and an attention size that is not emb_dim. We keep num_heads fixed and scale d_kv, as App. A's
"keeping all other shape parameters constant" says; the count stays a clean c * d^2.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigsparse_lib.errors import InputError

NAME = "t5"
PAD, EOS = 0, 1  # T5 vocabulary conventions; the decoder starts from PAD (T5X shift-right)


@dataclass(frozen=True)
class Config:
    """Shapes of one T5 v1.1 model. Frozen and hashable (a static argument of `jax.jit`)."""

    d_model: int = 768
    d_ff: int = 2048
    num_heads: int = 12
    d_kv: int = 64
    num_layers: int = 12  # per stack: the encoder and the decoder each have num_layers blocks
    vocab_size: int = 32_128  # 32k SentencePiece + 100 sentinels, padded to a multiple of 128
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    input_length: int = 512
    target_length: int = 114

    def __post_init__(self):
        for f in ("d_model", "d_ff", "num_heads", "d_kv", "num_layers", "vocab_size",
                  "relative_attention_num_buckets", "relative_attention_max_distance",
                  "input_length", "target_length"):
            if getattr(self, f) < 1:
                raise InputError(f"T5 {f} must be >= 1, got {getattr(self, f)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BASES: dict[str, Config] = {
    # Tiny shapes, same structure (d_ff = 8/3 d_model, num_heads * d_kv = d_model as in t5-base).
    "smoke": Config(d_model=24, d_ff=64, num_heads=2, d_kv=12, num_layers=1, vocab_size=128,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16,
                    input_length=16, target_length=4),
    # CPU scale: a few thousand steps take minutes on 2 cores. Two heads keep the width grid of
    # `config_for_nnz` fine (steps of 2) at the small widths of CPU sweeps. One layer per stack
    # (as the toy ViT has 2, not 4): a given N is sqrt(2) times as wide, its seeds spread less
    # against the gap between sizes, and it trains faster than with 2 + 2 layers (the probe's
    # numbers: T5 recipe 4 at `train.RECIPE_VERSIONS`).
    "toy": Config(d_model=72, d_ff=192, num_heads=2, d_kv=36, num_layers=1, vocab_size=512,
                  relative_attention_num_buckets=16, relative_attention_max_distance=32,
                  input_length=64, target_length=16),
    # t5-v1_1-base with the task lengths of the authors' C4 span-corruption config (App. A).
    "full": Config(),
}


def hidden_size(config: Config) -> int:
    """The hidden dimension that `scale_width` scales."""
    return config.d_model


def width_multiple(config: Config) -> int:
    """d_model must be a multiple of this (each head gets d_model / num_heads dimensions)."""
    return config.num_heads


def with_width(base: Config, d_model: int, multiple: int = 1) -> Config:
    """`base` at hidden size d_model; d_ff and num_heads*d_kv follow in proportion (App. A).

    `multiple`: d_ff is rounded to a multiple of it (an n:m model's group size m; see
    `models.config_for_nnz`). 1 keeps d_ff = round(d_model * 8/3) of every unstructured run.
    """
    d_model, multiple = int(d_model), int(multiple)
    d_ff = d_model * base.d_ff / base.d_model
    return dataclasses.replace(
        base, d_model=d_model,
        d_ff=max(multiple, round(d_ff / multiple) * multiple),
        d_kv=max(1, round(d_model * base.d_kv / base.d_model)))


def scale_width(base: Config, scale: float) -> Config:
    """Multiply the hidden dimension of `base` by `scale` (a *width* multiplier like the authors'
    `TransformerW.width`; the parameter count grows about as scale**2). d_model is rounded to the
    nearest multiple of num_heads."""
    if not scale > 0:
        raise InputError(f"width scale must be > 0, got {scale}")
    m = width_multiple(base)
    return with_width(base, max(1, round(base.d_model * scale / m)) * m)


def dense_count(config: Config) -> int:
    """Weights of the sparsified layers, from the shapes: every Dense kernel of every block."""
    d, inner, f = config.d_model, config.num_heads * config.d_kv, config.d_ff
    attn = 4 * d * inner
    mlp = 3 * d * f
    return config.num_layers * (attn + mlp) + config.num_layers * (2 * attn + mlp)


def paper_normaliser(config: Config) -> int:
    """The released data's count for this width: 2 * num_layers * 12 * d_model^2 (no cross-attention)."""
    return 2 * config.num_layers * 12 * config.d_model**2


def embedding_sparsity(S: float) -> float:
    """Sparsity of the token embeddings of a T5 model with backbone sparsity S (App. A: "we also
    sparsify the rather large embeddings to the amount necessary for parameter matching a smaller
    dense version").

    The sparse model of width w has N = c w^2 (1-S) backbone non-zeros; the dense model with the
    same N has width w sqrt(1-S), so its embeddings hold a fraction sqrt(1-S) of ours.
    """
    return 1.0 - math.sqrt(1.0 - S)


# ---------------------------------------------------------------------------------------------
# Relative position buckets (T5X `RelativePositionBiases._relative_position_bucket`)


def relative_position_bucket(relative_position: np.ndarray, *, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """Bucket of each relative position (memory - query) as in T5.

    Half the buckets (in each direction if bidirectional) hold exact distances 0..max_exact-1;
    the rest are log-spaced up to max_distance, beyond which everything shares the last bucket.
    In the causal case, keys after the query (positive relative position) fall in bucket 0.
    """
    ret = 0
    n = -np.asarray(relative_position)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # eps keeps exact powers of the ratio from rounding down (as T5X does)
    val_if_large = max_exact + (
        np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
        / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return (ret + np.where(is_small, n, val_if_large)).astype(np.int32)


class RelativePositionBiases(nn.Module):
    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, qlen: int, klen: int, bidirectional: bool) -> jax.Array:
        rel = np.arange(klen)[None, :] - np.arange(qlen)[:, None]
        bucket = relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=self.num_buckets,
                                          max_distance=self.max_distance)
        table = self.param("rel_embedding", nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                           (self.num_heads, self.num_buckets), jnp.float32)
        return jnp.take(table, jnp.asarray(bucket), axis=1)[None].astype(self.dtype)  # [1, heads, q, k]


# ---------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """T5's LayerNorm: x / rms(x) * scale, statistics in float32, no bias, no centring."""

    dtype: Any = jnp.float32
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return (y * scale).astype(self.dtype)


def _dense(features: int, name: str, dtype, init=None) -> nn.Dense:
    init = init or nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    return nn.Dense(features, use_bias=False, kernel_init=init, dtype=dtype, param_dtype=jnp.float32, name=name)


class MultiHeadDotProductAttention(nn.Module):
    """T5X attention with 2-D kernels [d_model, heads*d_kv] / [heads*d_kv, d_model]."""

    num_heads: int
    d_kv: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_q, x_kv, mask, bias=None):
        h, dk = self.num_heads, self.d_kv
        normal = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

        def query_init(*args):  # T5X folds 1/sqrt(d_kv) into the query initialisation
            return normal(*args) / np.sqrt(dk)

        b, lq, d = x_q.shape
        lk = x_kv.shape[1]
        q = _dense(h * dk, "query", self.dtype, query_init)(x_q).reshape(b, lq, h, dk)
        k = _dense(h * dk, "key", self.dtype, normal)(x_kv).reshape(b, lk, h, dk)
        v = _dense(h * dk, "value", self.dtype, normal)(x_kv).reshape(b, lk, h, dk)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        logits = jnp.where(mask, logits, -1e10)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, lq, h * dk)
        return _dense(d, "out", self.dtype, normal)(y)


class MlpBlock(nn.Module):
    """Gated-GELU feed-forward of T5 v1.1: wo(gelu(wi_0 x) * wi_1 x)."""

    d_ff: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(_dense(self.d_ff, "wi_0", self.dtype)(x)) * _dense(self.d_ff, "wi_1", self.dtype)(x)
        return _dense(x.shape[-1], "wo", self.dtype)(h)


class EncoderLayer(nn.Module):
    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, bias):
        c, dt = self.config, self.dtype
        y = RMSNorm(dt, name="pre_attention_layer_norm")(x)
        x = x + MultiHeadDotProductAttention(c.num_heads, c.d_kv, dt, name="attention")(y, y, mask, bias)
        y = RMSNorm(dt, name="pre_mlp_layer_norm")(x)
        return x + MlpBlock(c.d_ff, dt, name="mlp")(y)


class DecoderLayer(nn.Module):
    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, encoded, self_mask, cross_mask, bias):
        c, dt = self.config, self.dtype
        y = RMSNorm(dt, name="pre_self_attention_layer_norm")(x)
        x = x + MultiHeadDotProductAttention(c.num_heads, c.d_kv, dt, name="self_attention")(y, y, self_mask, bias)
        y = RMSNorm(dt, name="pre_cross_attention_layer_norm")(x)
        x = x + MultiHeadDotProductAttention(c.num_heads, c.d_kv, dt, name="encoder_decoder_attention")(
            y, encoded, cross_mask)
        y = RMSNorm(dt, name="pre_mlp_layer_norm")(x)
        return x + MlpBlock(c.d_ff, dt, name="mlp")(y)


def _relpos(c: Config, dtype) -> RelativePositionBiases:
    return RelativePositionBiases(c.relative_attention_num_buckets, c.relative_attention_max_distance,
                                  c.num_heads, dtype, name="relpos_bias")


class Encoder(nn.Module):
    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, tokens):
        c = self.config
        valid = tokens > PAD
        mask = (valid[:, None, :, None] & valid[:, None, None, :])
        bias = _relpos(c, self.dtype)(tokens.shape[1], tokens.shape[1], bidirectional=True)
        for i in range(c.num_layers):
            x = EncoderLayer(c, self.dtype, name=f"layers_{i}")(x, mask, bias)
        return RMSNorm(self.dtype, name="encoder_norm")(x)


class Decoder(nn.Module):
    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y, encoded, input_tokens, target_tokens):
        c = self.config
        lt = target_tokens.shape[1]
        t_valid = target_tokens > PAD
        causal = np.tril(np.ones((lt, lt), bool))
        self_mask = causal[None, None] & t_valid[:, None, :, None] & t_valid[:, None, None, :]
        cross_mask = t_valid[:, None, :, None] & (input_tokens > PAD)[:, None, None, :]
        bias = _relpos(c, self.dtype)(lt, lt, bidirectional=False)
        for i in range(c.num_layers):
            y = DecoderLayer(c, self.dtype, name=f"layers_{i}")(y, encoded, self_mask, cross_mask, bias)
        y = RMSNorm(self.dtype, name="decoder_norm")(y)
        # Untied output projection, computed in float32 as T5X does for logit stability.
        return _dense(c.vocab_size, "logits_dense", jnp.float32)(y.astype(jnp.float32))


def shift_right(targets: jax.Array) -> jax.Array:
    """Decoder inputs: targets shifted one step right, starting from PAD (T5X `shift_right`)."""
    return jnp.pad(targets, ((0, 0), (1, 0)), constant_values=PAD)[:, :-1]


class Transformer(nn.Module):
    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs, targets):
        c = self.config
        embed = nn.Embed(c.vocab_size, c.d_model, embedding_init=nn.initializers.normal(stddev=1.0),
                         param_dtype=jnp.float32, name="token_embedder")
        encoded = Encoder(c, self.dtype, name="encoder")(embed(inputs).astype(self.dtype), inputs)
        y = embed(shift_right(targets)).astype(self.dtype)
        return Decoder(c, self.dtype, name="decoder")(y, encoded, inputs, targets)


def init(config: Config, key: jax.Array) -> dict:
    """Parameters (the flax `params` collection), float32."""
    return _init(config, key)


@functools.partial(jax.jit, static_argnums=0)  # one XLA program: much faster than op-by-op on CPU
def _init(config: Config, key: jax.Array) -> dict:
    inputs = jnp.ones((1, config.input_length), jnp.int32)
    targets = jnp.ones((1, config.target_length), jnp.int32)
    return Transformer(config).init(key, inputs, targets)["params"]


def apply(params: dict, inputs: jax.Array, targets: jax.Array, config: Config, *, dtype=jnp.float32) -> jax.Array:
    """Logits [B, L_out, vocab] (float32) for teacher-forced `targets` given `inputs`."""
    return Transformer(config, jnp.dtype(dtype)).apply({"params": params}, inputs, targets)


def loss_fn(params: dict, batch: dict, config: Config, *, rng=None, dtype=jnp.float32) -> jax.Array:
    """Token cross-entropy averaged over the non-padding target tokens of
    `batch = {"inputs": int [B, L_in], "targets": int [B, L_out]}` (0 = padding).

    `rng` is accepted for interface symmetry and unused: T5 pretraining here uses no dropout
    (the authors' config sets DROPOUT_RATE = 0). T5X's auxiliary z-loss is not included.
    """
    del rng
    targets = batch["targets"]
    logits = apply(params, batch["inputs"], targets, config, dtype=dtype)
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    weights = (targets > PAD).astype(jnp.float32)
    return jnp.sum(xent * weights) / jnp.maximum(jnp.sum(weights), 1.0)


# ---------------------------------------------------------------------------------------------
# Which layers are pruned


def _is_backbone_kernel(path: tuple[str, ...]) -> bool:
    return path[-1] == "kernel" and any(p.startswith("layers_") for p in path)


def _is_embedding(path: tuple[str, ...]) -> bool:
    return path in (("token_embedder", "embedding"), ("decoder", "logits_dense", "kernel"))


def sparsifiable(params: dict) -> dict:
    """True on the backbone linear kernels: q/k/v/out of self- and cross-attention and
    wi_0/wi_1/wo of every encoder and decoder layer. Embeddings, the output projection, the
    relative-position tables and the RMSNorm scales are False (they are not counted in N)."""
    return _map_with_path(lambda path, _: _is_backbone_kernel(path), params)


def target_sparsities(config: Config, S: float) -> dict:
    """S on the backbone kernels; `embedding_sparsity(S)` on the token embedding and the output
    projection (both vocab x d_model matrices, as the authors' `embed_sparsity` map prunes
    `token_embedder` and `decoder/logits_dense`); 0.0 on everything else."""
    shapes = jax.eval_shape(lambda: init(config, jax.random.key(0)))
    S_emb = embedding_sparsity(float(S))

    def target(path, _):
        if _is_backbone_kernel(path):
            return float(S)
        return S_emb if _is_embedding(path) else 0.0
    return _map_with_path(target, shapes)


def _map_with_path(fn, tree: dict) -> dict:
    def go(prefix, node):
        if isinstance(node, dict):
            return {k: go(prefix + (k,), v) for k, v in node.items()}
        return fn(prefix, node)
    return go((), tree)
