"""Vision Transformer for multi-label classification (§3.1, App. A), in the shape of big_vision.

Mirrors `google-research/big_vision`, `big_vision/models/vit.py` (the paper's own ViT codebase):
patch embedding (a strided conv, computed as a matrix product: `PatchEmbedding`), learned position
embedding, pre-LayerNorm encoder blocks, global-average pooling ("gap") and a linear head trained
with the multi-label sigmoid cross-entropy used for JFT. Module and parameter names follow big_vision
(`embedding`, `pos_embedding`, `Transformer/encoderblock_{i}/...`, `head`).

One deliberate difference: every attention projection is a plain 2-D `[in, out]` Dense kernel
(big_vision's `MultiHeadDotProductAttention` keeps 3-D `[in, heads, head_dim]` kernels). Heads are
reshaped inside the module, so pruning sees every sparsified layer as a matrix whose axis 0 is
the reduction dimension -- the axis along which n:m groups run (§4.1, Alg. 1).

Sizes: `BASES["full"]` is ViT-B/16 (`decode_variant("B/16")`). Other sizes come from
`scale_width`, which scales only the hidden dimension (App. A, "Model sizes"): width and
mlp_dim change together (mlp_dim / width stays 4), depth, heads and patch size stay fixed.
Each block then holds 4 w^2 (attention) + 2 w * mlp_dim (MLP) = 12 w^2 sparsifiable weights,
exactly the released data's normaliser `BASE = 12 * (12 * 768**2)` at w = 768.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bigsparse_lib.errors import InputError

NAME = "vit"

# big_vision's size table (Table 2 of Zhai et al., 2022, "Scaling Vision Transformers").
_VARIANTS = {
    "width": {"Ti": 192, "S": 384, "M": 512, "B": 768, "L": 1024},
    "depth": {"Ti": 12, "S": 12, "M": 12, "B": 12, "L": 24},
    "mlp_dim": {"Ti": 768, "S": 1536, "M": 2048, "B": 3072, "L": 4096},
    "num_heads": {"Ti": 3, "S": 6, "M": 8, "B": 12, "L": 16},
}


def decode_variant(variant: str) -> dict[str, int]:
    """Shape fields of a big_vision variant name such as "B/16" (as big_vision's `decode_variant`)."""
    v, _, patch = variant.partition("/")
    if v not in _VARIANTS["width"]:
        raise InputError(f"unknown ViT variant {variant!r}; expected one of {', '.join(_VARIANTS['width'])}")
    out = {k: table[v] for k, table in _VARIANTS.items()}
    if patch:
        out["patch_size"] = int(patch)
    return out


@dataclass(frozen=True)
class Config:
    """Shapes of one ViT. Frozen and hashable, so it can be a static argument of `jax.jit`."""

    width: int = 768
    depth: int = 12
    mlp_dim: int = 3072
    num_heads: int = 12
    patch_size: int = 16
    image_size: int = 224
    channels: int = 3
    # JFT-3B/4B has "around 30k labels" (Zhai et al., 2022). JFT is not public: a real dataset sets its own.
    num_classes: int = 30_000
    # big_vision's JFT/i21k configs start the head bias at -10 so that the many-class sigmoid head
    # initially predicts "absent" for every label (`init_head_bias`). A tuple gives each class its own
    # (the toy preset: each class's prior logit).
    head_bias_init: float | tuple[float, ...] = -10.0

    def __post_init__(self):
        if self.width % self.num_heads:
            raise InputError(f"ViT width {self.width} is not a multiple of num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise InputError(f"ViT image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for f in ("width", "depth", "mlp_dim", "num_heads", "patch_size", "image_size", "channels", "num_classes"):
            if getattr(self, f) < 1:
                raise InputError(f"ViT {f} must be >= 1, got {getattr(self, f)}")
        if isinstance(self.head_bias_init, tuple) and len(self.head_bias_init) != self.num_classes:
            raise InputError(f"ViT head_bias_init has {len(self.head_bias_init)} values for {self.num_classes} classes")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prior_head_bias(config: Config, preset: str) -> Config:
    """`config` with each class's head bias at its prior logit on the preset's synthetic stream
    (`data.toy.MotifImages.prior_logits`): K classes whose frequencies span 0.1% to 50% need
    biases from -6 to 0, and a toy run cannot walk them there (the comment on BASES)."""
    from bigsparse_lib.data import toy  # the model's shapes fix the stream's images and classes

    # the cached instance the stream itself uses (`data.toy.motif_images`): built once per process
    images = toy.motif_images(toy.IMAGE_SPECS[preset], config.num_classes, config.image_size,
                              config.image_size, config.channels)
    return dataclasses.replace(config, head_bias_init=tuple(round(float(x), 4) for x in images.prior_logits()))


BASES: dict[str, Config] = {
    # Tiny shapes with the full model's structure: one forward+backward well under a second on CPU.
    # head_bias_init: the smoke task's mean prior logit and the toy task's per-class prior logits
    # (`data.toy.MotifImages.prior_logit(s)`, checked by tests/test_data.py), as big_vision starts
    # its JFT heads at -10.
    # Why it matters: Adafactor moves each parameter by at most about lr per step whatever its
    # gradient, so a head bias started at 0 (p = 0.5 for every label, loss K log 2) walks towards
    # the label frequencies (logit ~ -1.6 for 16 classes) at <= lr per step; under the warm-up/
    # rsqrt/cool-down schedule a whole toy run of a few hundred steps moves it by only ~0.3 (lr 3e-3)
    # to ~2 (lr 1e-2) logits. That is the "label-frequency plateau" of the toy ViT sweeps (issue 11):
    # the runs spent their budget on label frequencies, and the kernels compensating for the bias,
    # not on features.
    "smoke": Config(width=24, depth=1, mlp_dim=96, num_heads=2, patch_size=4, image_size=16,
                    channels=3, num_classes=8, head_bias_init=-0.8),
    # CPU scale. Two heads keep the width grid of `config_for_nnz` fine (steps of 2) at the small
    # widths of CPU sweeps; depth 1 (not 12) makes a given N as wide as it can be, and CPU matmuls
    # need width to run near their peak (issue 11: fewer, wider models). At depth 1 instead of 2
    # (ViT recipe 7, `train.RECIPE_VERSIONS`, which gives the measurements) the toy main sweep has
    # the same FLOPs, runs nearer the peak, and its fit and held-out size came closer.
    # 256 classes, one per labelled motif of the toy stream (`data.toy.IMAGE_SPECS`), so that no
    # class is a large share of the loss: with 16, each held 0.2-0.7 nats, and which ones a run had
    # learned made its seed spread.
    "toy": prior_head_bias(Config(width=64, depth=1, mlp_dim=256, num_heads=2, patch_size=8, image_size=32,
                                  channels=3, num_classes=256), "toy"),
    # The paper's base: ViT-B/16 at 224 px on JFT (App. A).
    "full": Config(**decode_variant("B/16")),
}


def hidden_size(config: Config) -> int:
    """The hidden dimension that `scale_width` scales."""
    return config.width


def width_multiple(config: Config) -> int:
    """Widths must be a multiple of this (heads divide the width evenly)."""
    return config.num_heads


def with_width(base: Config, width: int, multiple: int = 1) -> Config:
    """`base` at hidden size `width`, mlp_dim kept in proportion (App. A: only the hidden dimension
    scales) and rounded to a multiple of `multiple` (an n:m model's group size; `models.config_for_nnz`)."""
    multiple = int(multiple)
    mlp_dim = width * base.mlp_dim / base.width
    return dataclasses.replace(base, width=int(width), mlp_dim=max(multiple, round(mlp_dim / multiple) * multiple))


def scale_width(base: Config, scale: float) -> Config:
    """Multiply the hidden dimension of `base` by `scale` (a *width* multiplier, like the authors'
    `TransformerW.width`; the parameter count grows about as scale**2).

    The width is rounded to the nearest multiple of `num_heads` (at least one head dimension per
    head); everything except width and mlp_dim stays as in `base` (App. A).
    """
    if not scale > 0:
        raise InputError(f"width scale must be > 0, got {scale}")
    m = width_multiple(base)
    return with_width(base, max(1, round(base.width * scale / m)) * m)


def dense_count(config: Config) -> int:
    """Weights of the sparsified layers (all Dense kernels in the blocks), from the shapes alone."""
    w, m = config.width, config.mlp_dim
    return config.depth * (4 * w * w + 2 * w * m)


def paper_normaliser(config: Config) -> int:
    """The released data's count for this width: depth * 12 * width^2 (equals `dense_count` at mlp_dim = 4 w)."""
    return config.depth * 12 * config.width**2


# ---------------------------------------------------------------------------------------------
# The model


class MlpBlock(nn.Module):
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        inits = dict(kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(stddev=1e-6),
                     dtype=self.dtype, param_dtype=jnp.float32)
        d = x.shape[-1]
        x = nn.Dense(self.mlp_dim, **inits)(x)
        x = nn.gelu(x)
        return nn.Dense(d, **inits)(x)


class MultiHeadDotProductAttention(nn.Module):
    """Self-attention with 2-D [in, out] q/k/v/out kernels; heads are a reshape of the out axis."""

    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, l, d = x.shape
        h = self.num_heads
        dense = lambda n, name: nn.Dense(n, kernel_init=nn.initializers.xavier_uniform(),  # noqa: E731
                                         dtype=self.dtype, param_dtype=jnp.float32, name=name)
        q, k, v = (dense(d, n)(x).reshape(b, l, h, d // h) for n in ("query", "key", "value"))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / np.sqrt(d // h)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # softmax in float32 for bf16 stability
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, l, d)
        return dense(d, "out")(y)


class Encoder1DBlock(nn.Module):
    """Pre-LayerNorm block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    mlp_dim: int
    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        ln = dict(dtype=self.dtype, param_dtype=jnp.float32)
        y = nn.LayerNorm(**ln)(x)
        x = x + MultiHeadDotProductAttention(self.num_heads, self.dtype)(y)
        y = nn.LayerNorm(**ln)(x)
        return x + MlpBlock(self.mlp_dim, self.dtype)(y)


class Encoder(nn.Module):
    """The stack of blocks and the final LayerNorm (big_vision's "Transformer")."""

    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = self.config
        for i in range(c.depth):
            x = Encoder1DBlock(c.mlp_dim, c.num_heads, self.dtype, name=f"encoderblock_{i}")(x)
        return nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="encoder_norm")(x)


class PatchEmbedding(nn.Module):
    """big_vision's patch embedding, `nn.Conv(width, (p, p), strides=(p, p), padding="VALID")`,
    computed as what it is: each p x p patch flattened and multiplied by the kernel. Same
    parameters (`kernel` [p, p, C, width], `bias`), same initialisation, same function
    (`tests/test_models.py` checks it against `lax.conv_general_dilated`). Why not the conv:
    inside the engine's `lax.scan` of steps, XLA's CPU backend ran the strided convolution
    (forward or backward: not told apart) so slowly that a toy ViT step took 3.5x as long as
    the same step dispatched alone (21.8 against 6.4 ms at N = 24K); as a matrix product it
    does not (BENCHMARKS.md)."""

    width: int
    patch: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image):
        n, H, W, C = image.shape
        p = self.patch
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (p, p, C, self.width), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.width,), jnp.float32)
        patches = image.reshape(n, H // p, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(n, (H // p) * (W // p), p * p * C).astype(self.dtype)
        return patches @ kernel.reshape(p * p * C, self.width).astype(self.dtype) + bias.astype(self.dtype)


class ViT(nn.Module):
    """big_vision `_Model` with posemb="learn", pool_type="gap", no dropout (the paper pretrains without)."""

    config: Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image):
        c = self.config
        p = c.patch_size
        x = PatchEmbedding(c.width, p, self.dtype, name="embedding")(image)
        n, hw, d = x.shape
        pos = self.param("pos_embedding", nn.initializers.normal(stddev=1 / np.sqrt(d)), (1, hw, d), jnp.float32)
        x = x + pos.astype(self.dtype)
        x = Encoder(c, self.dtype, name="Transformer")(x)
        x = jnp.mean(x, axis=1)  # "gap"
        # Head in float32: the loss of a many-class sigmoid head is sensitive to logit rounding.
        head = nn.Dense(c.num_classes, kernel_init=nn.initializers.zeros,
                        bias_init=nn.initializers.constant(np.asarray(c.head_bias_init, np.float32)), name="head")
        return head(x.astype(jnp.float32))


def init(config: Config, key: jax.Array) -> dict:
    """Parameters (the flax `params` collection), float32."""
    return _init(config, key)


@functools.partial(jax.jit, static_argnums=0)  # one XLA program: much faster than op-by-op on CPU
def _init(config: Config, key: jax.Array) -> dict:
    image = jnp.zeros((1, config.image_size, config.image_size, config.channels), jnp.float32)
    return ViT(config).init(key, image)["params"]


def apply(params: dict, images: jax.Array, config: Config, *, dtype=jnp.float32) -> jax.Array:
    """Logits [B, num_classes] (float32) for images [B, H, W, C]; matmuls run in `dtype`."""
    return ViT(config, jnp.dtype(dtype)).apply({"params": params}, images)


def sigmoid_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Multi-label sigmoid cross-entropy, summed over classes and averaged over the batch
    (big_vision `u.sigmoid_xent`, the JFT pretraining loss)."""
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    return jnp.mean(-jnp.sum(labels * log_p + (1.0 - labels) * log_not_p, axis=-1))


def loss_fn(params: dict, batch: dict, config: Config, *, rng=None, dtype=jnp.float32) -> jax.Array:
    """Mean multi-label loss of `batch = {"image": [B,H,W,C], "labels": [B,K] multi-hot}`.

    `rng` is accepted for interface symmetry and unused: the paper's recipe has no dropout.
    """
    del rng
    logits = apply(params, batch["image"], config, dtype=dtype)
    return sigmoid_xent(logits, batch["labels"].astype(jnp.float32))


def _is_backbone_kernel(path: tuple[str, ...]) -> bool:
    return path[-1] == "kernel" and any(p.startswith("encoderblock_") for p in path)


def sparsifiable(params: dict) -> dict:
    """True on the backbone linear kernels: q/k/v/out and both MLP kernels of every encoder block
    (§3.1 "we uniformly sparsify all linear layers in the Transformer backbone"). Patch embedding,
    position embedding, LayerNorms, biases and the head stay dense."""
    return _map_with_path(lambda path, _: _is_backbone_kernel(path), params)


def target_sparsities(config: Config, S: float) -> dict:
    """S on every backbone kernel, 0.0 elsewhere (same structure as `init(config, key)`)."""
    shapes = jax.eval_shape(lambda: init(config, jax.random.key(0)))
    return _map_with_path(lambda path, _: float(S) if _is_backbone_kernel(path) else 0.0, shapes)


def _map_with_path(fn, tree: dict) -> dict:
    """`fn(path_of_keys, leaf)` over a nested dict of parameters."""
    def go(prefix, node):
        if isinstance(node, dict):
            return {k: go(prefix + (k,), v) for k, v in node.items()}
        return fn(prefix, node)
    return go((), tree)
