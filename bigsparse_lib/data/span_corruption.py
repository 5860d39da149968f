"""T5 span corruption in numpy (Raffel et al., 2020, §3.1.4; the paper's T5/C4 objective, App. A).

A mirror of the T5 preprocessors `random_spans_helper`, `random_spans_noise_mask`,
`noise_span_to_unique_sentinel` and `nonnoise_span_to_unique_sentinel`
(google-research/text-to-text-transfer-transformer, `t5/data/preprocessors.py`), with
the same length arithmetic, vectorised over a batch of equal-length token rows:

- `num_noise_tokens = round(L * noise_density)`, clipped to [1, L-1];
  `num_noise_spans = max(1, round(num_noise_tokens / mean_noise_span_length))`
  (Python/numpy `round` is round-half-to-even, like `tf.math.round`).
- Noise and non-noise tokens are each cut into `num_noise_spans` non-empty segments,
  uniformly over compositions (T5 shuffles `num_segments - 1` ones among
  `num_items - 1` slots); spans interleave non-noise first, so the row ends in noise.
- Each noise span becomes one sentinel in the inputs; the targets hold the sentinel then
  the span. Sentinels count down from the top id of the vocabulary (T5's
  `sentinel_id = vocab_size - 1`, then `vocab_size - 2`, ...). EOS (=1) ends both;
  0 pads.

`random_spans_helper(512)` gives T5's raw chunk of 568 tokens and 114 targets.
"""
from __future__ import annotations

import numpy as np

PAD_ID = 0
EOS_ID = 1
NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


def noise_counts(length: int, noise_density: float = NOISE_DENSITY,
                 mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
    """(num_noise_tokens, num_noise_spans) for a row of `length` tokens, as in T5."""
    length = max(int(length), 2)
    num_noise_tokens = int(np.round(length * noise_density))
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = max(int(np.round(num_noise_tokens / mean_noise_span_length)), 1)
    return num_noise_tokens, num_noise_spans


def random_spans_helper(inputs_length: int, noise_density: float = NOISE_DENSITY,
                        mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
    """(tokens_length, targets_length): the longest raw chunk whose corrupted inputs
    (non-noise tokens + one sentinel per span + EOS) fit in `inputs_length`, and the
    matching targets length (noise tokens + one sentinel per span + EOS)."""

    def lengths(tokens_length):
        n_noise = int(round(tokens_length * noise_density))
        n_spans = int(round(n_noise / mean_noise_span_length))
        return tokens_length - n_noise + n_spans + 1, n_noise + n_spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, lengths(tokens_length)[1]


def fit_lengths(inputs_length: int, targets_length: int, noise_density: float = NOISE_DENSITY,
                mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> int:
    """The raw row length to corrupt for a model with these input/target lengths:
    T5's `random_spans_helper(inputs_length)` tokens_length (568 for 512/114), shortened
    until the targets fit too when `targets_length` is below the helper's."""
    from bigsparse_lib.errors import InputError

    tokens_length, _ = random_spans_helper(inputs_length, noise_density, mean_noise_span_length)
    while tokens_length >= 2:
        n_noise, n_spans = noise_counts(tokens_length, noise_density, mean_noise_span_length)
        if n_noise + n_spans + 1 <= targets_length and tokens_length - n_noise + n_spans + 1 <= inputs_length:
            return tokens_length
        tokens_length -= 1
    raise InputError(f"input/target lengths {inputs_length}/{targets_length} too short for span corruption")


def _random_segmentation(rng: np.random.Generator, batch: int, num_items: int,
                         num_segments: int) -> np.ndarray:
    """[batch, num_segments] segment lengths, each row a uniform random composition of
    `num_items` into `num_segments` positive parts (T5's `_random_segmentation`)."""
    return segmentation_from_keys(rng.random((batch, num_items - 1)), num_segments)


def segmentation_from_keys(keys: np.ndarray, num_segments: int) -> np.ndarray:
    """`_random_segmentation` from its random draws: `keys` [batch, num_items - 1] i.i.d.
    uniform. The gaps with the num_segments-1 smallest keys (ties broken by position, a
    stable sort) start segments, so every choice of gaps is equally likely."""
    keys = np.asarray(keys)
    batch, num_items = keys.shape[0], keys.shape[1] + 1
    order = np.argsort(keys, axis=1, kind="stable")
    first = np.zeros((batch, num_items), dtype=np.int64)
    np.put_along_axis(first[:, 1:], order[:, : num_segments - 1], 1, axis=1)
    segment_id = np.cumsum(first, axis=1)
    rows = np.repeat(np.arange(batch), num_items)
    lengths = np.zeros((batch, num_segments), dtype=np.int64)
    np.add.at(lengths, (rows, segment_id.ravel()), 1)
    return lengths


def random_spans_noise_mask(rng: np.random.Generator, batch: int, length: int,
                            noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> np.ndarray:
    """Boolean [batch, length] noise masks, each row as T5's `random_spans_noise_mask`
    (without random_roll): exactly `num_noise_tokens` True in `num_noise_spans` runs."""
    n_noise, _ = noise_counts(length, noise_density, mean_noise_span_length)
    noise_keys = rng.random((batch, n_noise - 1))
    nonnoise_keys = rng.random((batch, max(length, 2) - n_noise - 1))
    return noise_mask_from_keys(noise_keys, nonnoise_keys, length, noise_density, mean_noise_span_length)


def noise_mask_from_keys(noise_keys: np.ndarray, nonnoise_keys: np.ndarray, length: int,
                         noise_density: float = NOISE_DENSITY,
                         mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> np.ndarray:
    """`random_spans_noise_mask` from its draws: uniform keys [batch, num_noise - 1] and
    [batch, length - num_noise - 1] that segment the noise and non-noise tokens."""
    n_noise, n_spans = noise_counts(length, noise_density, mean_noise_span_length)
    batch = noise_keys.shape[0]
    noise_lengths = segmentation_from_keys(noise_keys, n_spans)
    nonnoise_lengths = segmentation_from_keys(nonnoise_keys, n_spans)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=2).reshape(batch, 2 * n_spans)
    # Odd-numbered runs (1, 3, ...) are noise; the run index of each position is the
    # number of run starts at or before it.
    starts = np.cumsum(interleaved, axis=1)[:, :-1]
    indicator = np.zeros((batch, max(length, 2)), dtype=np.int64)
    np.put_along_axis(indicator, starts, 1, axis=1)
    return (np.cumsum(indicator, axis=1) % 2 == 1)[:, :length]


def _spans_to_sentinels(tokens: np.ndarray, mask: np.ndarray, sentinel_top: int,
                        out_length: int) -> np.ndarray:
    """Replace each run of masked tokens by one sentinel (sentinel_top, sentinel_top-1,
    ...), drop the rest of the run, append EOS and pad with 0 to out_length."""
    prev = np.pad(mask[:, :-1], ((0, 0), (1, 0)))
    first = mask & ~prev
    later = mask & prev
    sentinel = sentinel_top + 1 - np.cumsum(first, axis=1)
    out_tokens = np.where(first, sentinel, tokens)
    keep = ~later
    n_keep = keep.sum(axis=1)
    if n_keep.max() + 1 > out_length:
        raise ValueError(f"corrupted length {n_keep.max() + 1} exceeds {out_length}")
    out = np.full((tokens.shape[0], out_length), PAD_ID, dtype=np.int32)
    # Position of each kept token in its output row: rank among kept tokens.
    pos = np.cumsum(keep, axis=1) - 1
    rows, cols = np.nonzero(keep)
    out[rows, pos[rows, cols]] = out_tokens[rows, cols]
    out[np.arange(tokens.shape[0]), n_keep] = EOS_ID
    return out


def noise_span_to_unique_sentinel(tokens, noise_mask, sentinel_top, out_length):
    """Inputs: non-noise tokens, each noise span replaced by a sentinel, then EOS."""
    return _spans_to_sentinels(np.asarray(tokens), np.asarray(noise_mask, bool), sentinel_top, out_length)


def nonnoise_span_to_unique_sentinel(tokens, noise_mask, sentinel_top, out_length):
    """Targets: noise tokens, each non-noise span replaced by a sentinel, then EOS."""
    return _spans_to_sentinels(np.asarray(tokens), ~np.asarray(noise_mask, bool), sentinel_top, out_length)


def span_corrupt(tokens: np.ndarray, rng: np.random.Generator, *, vocab_size: int,
                 inputs_length: int, targets_length: int,
                 noise_density: float = NOISE_DENSITY,
                 mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> dict[str, np.ndarray]:
    """Span-corrupt a [B, T] batch of token rows (ids in [2, vocab_size - num_spans)).

    Returns {"inputs": int32 [B, inputs_length], "targets": int32 [B, targets_length]},
    sentinels counting down from `vocab_size - 1`.
    """
    tokens = np.asarray(tokens)
    mask = random_spans_noise_mask(rng, tokens.shape[0], tokens.shape[1], noise_density,
                                   mean_noise_span_length)
    top = vocab_size - 1
    return {
        "inputs": noise_span_to_unique_sentinel(tokens, mask, top, inputs_length),
        "targets": nonnoise_span_to_unique_sentinel(tokens, mask, top, targets_length),
    }


# ----------------------------------------------------------------- JAX twins (device batches)
# The same functions in jax.numpy, for batches generated on the device (`toy.ToyT5Stream.
# device_batch_fn`): pure, and jit/vmap/scan-compatible. The numpy versions above are their
# readable references (tests/test_data.py checks equality on the same draws).


def jax_noise_mask_from_keys(noise_keys, nonnoise_keys, length: int,
                             noise_density: float = NOISE_DENSITY,
                             mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH):
    """`noise_mask_from_keys` in jax.numpy: bool [batch, length]."""
    import jax.numpy as jnp

    n_noise, n_spans = noise_counts(length, noise_density, mean_noise_span_length)

    def segment_lengths(keys):
        num_items = keys.shape[1] + 1
        order = jnp.argsort(keys, axis=1, stable=True)[:, : n_spans - 1]
        # gap g (0-based) starts segment at item g + 1
        first = jnp.zeros((keys.shape[0], num_items), jnp.int32)
        first = first.at[jnp.arange(keys.shape[0])[:, None], order + 1].set(1)
        segment_id = jnp.cumsum(first, axis=1)
        return (segment_id[:, :, None] == jnp.arange(n_spans)).sum(axis=1)

    interleaved = jnp.stack([segment_lengths(nonnoise_keys), segment_lengths(noise_keys)],
                            axis=2).reshape(noise_keys.shape[0], 2 * n_spans)
    starts = jnp.cumsum(interleaved, axis=1)[:, :-1]
    run = (starts[:, None, :] <= jnp.arange(length)[None, :, None]).sum(axis=2)
    return run % 2 == 1


def jax_spans_to_sentinels(tokens, mask, sentinel_top: int, out_length: int):
    """`_spans_to_sentinels` in jax.numpy (the caller checks that the rows fit)."""
    import jax.numpy as jnp

    prev = jnp.pad(mask[:, :-1], ((0, 0), (1, 0)))
    first = mask & ~prev
    keep = ~(mask & prev)
    sentinel = sentinel_top + 1 - jnp.cumsum(first, axis=1)
    out_tokens = jnp.where(first, sentinel, tokens).astype(jnp.int32)
    pos = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, out_length)  # dropped tokens go nowhere
    rows = jnp.arange(tokens.shape[0])[:, None]
    out = jnp.full((tokens.shape[0], out_length), PAD_ID, jnp.int32)
    out = out.at[rows, pos].set(out_tokens, mode="drop")
    n_keep = keep.sum(axis=1)
    return out.at[jnp.arange(tokens.shape[0]), n_keep].set(EOS_ID, mode="drop")
