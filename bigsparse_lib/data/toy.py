"""Synthetic, infinite, seedable data streams for CPU-scale sweeps (stand-ins for C4 and JFT).

The paper studies the regime where loss keeps falling with model size N and data D
(§2, "Training data" / "Model size"). Real C4/JFT are out of reach on a laptop, so the
toy streams are built to share that property at toy sizes, and to have an irreducible
loss we know, so that a fitted law's `c` can be checked against the truth.

Both streams follow the "quanta" recipe: many independent pieces of knowledge whose
frequencies follow a Zipf law. A model of limited capacity learns only the most frequent
pieces (loss falls as a power of N); a rare piece is only learnt after it has been seen
often enough (loss falls as a power of D). The piece counts are set so that no toy-size
model can learn them all.

- `ZipfPhraseLanguage` + `ToyT5Stream`: text is a stream of "phrases" (fixed random
  token strings, 2-6 tokens) drawn i.i.d. from a Zipf law over thousands of phrases,
  each token replaced by a uniform random one with a small probability. Rows are
  span-corrupted exactly as T5 does (`span_corruption`).
- `MotifImages` + `ToyViTStream`: an image is a grid of cells (the ViT's patches); a few
  random cells show a smooth random motif at a random positive weight. Labelled motifs
  (Zipf-frequent, several present per image; one per class in the toy preset, several in
  the smoke and full ones) name the classes present,
  unlabelled distractor motifs add clutter, and each label is flipped with a known
  probability eta.

Every batch is a pure function of (seed, split, index, batch_size): it is drawn from
`np.random.default_rng([seed, split_id, index, batch_size, tag])`. Batches for
different indices are independent draws from a continuous or astronomically large
sample space, so no example repeats (T5: a row holds > 50 nats of randomness; ViT:
real-valued amplitudes) and the train and eval streams (different split_id) are
disjoint. The *task* (phrases, motifs) is fixed by the spec's `task_seed`, not by
`seed`: runs with different seeds see different samples of the same distribution.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np

from bigsparse_lib.data import span_corruption as sc
from bigsparse_lib.errors import InputError

SPLIT_IDS = {"train": 0, "eval": 1}
_ESTIMATE_SPLIT = 2  # a third stream, used only to estimate the irreducible loss
_T5_TAG, _VIT_TAG = 5, 7  # keep T5 and ViT draws apart even with equal seeds


def stream_key(tag: int, seed, split, index, batch_size):
    """The jax.random key of one batch: key(tag) folded with seed, split id, batch index and
    batch size in turn. Traced integers are fine (the device functions vmap over seeds).
    Different tuples give different keys (fold_in is a hash of the key and the number), so
    their draws are independent; the tag keeps T5 and ViT draws apart."""
    key = jax.random.key(tag)
    for x in (seed, split, index, batch_size):
        key = jax.random.fold_in(key, x)
    return key


def _host_draws(draws_fn, key, batch_size: int) -> dict:
    """The draws of one batch as numpy arrays (the host reference consumes the very same
    jax.random numbers as the device function)."""
    return {k: np.asarray(v) for k, v in jax.device_get(draws_fn(key, batch_size)).items()}


def split_id(split: str) -> int:
    try:
        return SPLIT_IDS[split]
    except KeyError:
        raise InputError(f"split must be 'train' or 'eval', got {split!r}") from None


def zipf(n: int, alpha: float) -> np.ndarray:
    """Probabilities proportional to rank**-alpha, rank = 1..n."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


def binary_entropy(p: float) -> float:
    """H_b(p) in nats."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return float(-p * math.log(p) - (1 - p) * math.log1p(-p))


# --------------------------------------------------------------------------- language


@dataclasses.dataclass(frozen=True)
class LanguageSpec:
    """The synthetic language's knobs (the T5 stand-in).

    num_phrases: R, phrases in the lexicon (the "pieces of knowledge").
    min_len/max_len: phrase lengths, uniform in [min_len, max_len].
    phrase_zipf: alpha of the Zipf law over phrases (>1 gives a power-law tail of rare
        phrases: the loss left by the unlearnt phrases beyond rank k falls like k**(1-alpha)).
    token_zipf: Zipf exponent of the token distribution phrases are spelt with.
    noise: epsilon, probability that a token is replaced by a uniform random token.
    task_seed: fixes the lexicon.
    """

    num_phrases: int = 4096
    min_len: int = 2
    max_len: int = 6
    phrase_zipf: float = 1.2
    token_zipf: float = 1.0
    noise: float = 0.02
    task_seed: int = 0

    def validate(self) -> "LanguageSpec":
        if self.num_phrases < 1 or not 1 <= self.min_len <= self.max_len:
            raise InputError(f"bad LanguageSpec phrase counts/lengths: {self}")
        if not 0.0 <= self.noise < 1.0:
            raise InputError(f"LanguageSpec.noise must be in [0, 1), got {self.noise}")
        return self


LANGUAGE_SPECS = {
    "smoke": LanguageSpec(num_phrases=256, max_len=4),
    "toy": LanguageSpec(),
    "full": LanguageSpec(num_phrases=65536, max_len=8),
}


class ZipfPhraseLanguage:
    """A hidden-Markov source: the hidden state is (phrase r, position j in it).

    From (r, j) the source moves to (r, j+1), or, at the end of a phrase, to (r', 0)
    with probability p_{r'} (Zipf). State (r, j) emits the phrase's j-th token with
    probability 1 - eps + eps/V, any other content token with probability eps/V.
    Content tokens are the ids [first_id, first_id + V).
    """

    def __init__(self, spec: LanguageSpec, num_tokens: int, first_id: int = 2):
        spec.validate()
        if num_tokens < 2:
            raise InputError(f"the synthetic language needs >= 2 content tokens, got {num_tokens}")
        self.spec, self.V, self.first_id = spec, int(num_tokens), int(first_id)
        rng = np.random.default_rng([spec.task_seed, 0x1A96])
        R = spec.num_phrases
        self.lengths = rng.integers(spec.min_len, spec.max_len + 1, size=R)
        # Sampling inverts a float32 CDF (on the host and on the device alike); the
        # likelihoods use the probabilities that CDF really has, so they stay exact.
        self.cdf = np.cumsum(zipf(R, spec.phrase_zipf)).astype(np.float32)
        self.cdf[-1] = 1.0
        self.p = np.diff(self.cdf.astype(np.float64), prepend=0.0)
        # Spell phrases with a Zipfian (shuffled) token distribution, as in real text.
        token_p = zipf(self.V, spec.token_zipf)[rng.permutation(self.V)]
        self.table = np.zeros((R, spec.max_len), dtype=np.int32)
        for r in range(R):
            self.table[r, : self.lengths[r]] = rng.choice(self.V, size=self.lengths[r], p=token_p)
        # Flat hidden-state layout for the forward algorithm: phrase r holds states
        # starts[r] .. starts[r] + lengths[r] - 1.
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.ends = self.starts + self.lengths - 1
        self.state_token = np.concatenate([self.table[r, : self.lengths[r]] for r in range(R)])
        self.num_states = int(self.lengths.sum())

    # -- sampling
    def phrases_per_row(self, length: int) -> int:
        """Phrases drawn per row: enough to cover `length` tokens even if all are shortest."""
        return -(-int(length) // self.spec.min_len)

    def draws(self, key, batch: int, length: int) -> dict:
        """The random draws of `batch` rows (jax.random, on whatever device runs it)."""
        import jax

        k_phrase, k_flip, k_token = jax.random.split(key, 3)
        shape = (batch, int(length))
        return {"phrase": jax.random.uniform(k_phrase, (batch, self.phrases_per_row(length))),
                "flip": jax.random.uniform(k_flip, shape),
                "token": jax.random.randint(k_token, shape, 0, self.V)}

    def rows_from_draws(self, draws: dict, length: int) -> np.ndarray:
        """[batch, length] content-token rows (ids from first_id), each the start of a fresh
        stream: phrase r = the first with cdf > u (inverse-CDF sampling), phrases spelt out
        one after another and cut at `length`, then each token replaced by draws["token"]
        where draws["flip"] < eps. The readable reference of `jax_rows_from_draws`."""
        u = np.asarray(draws["phrase"])
        ids = np.searchsorted(self.cdf, u, side="right")
        batch = u.shape[0]
        rows = np.zeros((batch, length), np.int64)
        for b in range(batch):
            text = np.concatenate([self.table[r, : self.lengths[r]] for r in ids[b]])
            rows[b] = text[:length]
        flip = np.asarray(draws["flip"]) < self.spec.noise
        rows = np.where(flip, np.asarray(draws["token"]), rows)
        return (rows + self.first_id).astype(np.int32)

    def jax_rows_from_draws(self, draws: dict, length: int):
        """`rows_from_draws` in jax.numpy (pure; jit/vmap/scan-compatible)."""
        import jax.numpy as jnp

        ids = jnp.searchsorted(jnp.asarray(self.cdf), draws["phrase"], side="right")
        batch, k = ids.shape
        tokens = jnp.asarray(self.table)[ids].reshape(batch, k * self.spec.max_len)
        valid = (jnp.arange(self.spec.max_len) < jnp.asarray(self.lengths)[ids][..., None]).reshape(batch, -1)
        # each valid token goes to its rank among the row's valid tokens; the rest are dropped
        pos = jnp.where(valid, jnp.cumsum(valid, axis=1) - 1, length)
        rows = jnp.zeros((batch, length), jnp.int32)
        rows = rows.at[jnp.arange(batch)[:, None], pos].set(tokens, mode="drop")
        rows = jnp.where(draws["flip"] < self.spec.noise, draws["token"], rows)
        return (rows + self.first_id).astype(jnp.int32)

    # -- exact likelihoods (forward algorithm over the hidden states)
    def _step(self, a: np.ndarray) -> np.ndarray:
        """One hidden transition for each row of a [rows, states] array of forward weights."""
        out = np.empty_like(a)
        out[:, 1:] = a[:, :-1]
        out[:, self.starts] = a[:, self.ends].sum(axis=1, keepdims=True) * self.p
        return out

    def _emit(self, token: int) -> np.ndarray:
        eps = self.spec.noise
        hit = self.state_token == (token - self.first_id)
        return np.where(hit, 1.0 - eps + eps / self.V, eps / self.V)

    def _start(self, token: int) -> np.ndarray:
        a = np.zeros((1, self.num_states))
        a[0, self.starts] = self.p
        return a * self._emit(token)

    def log_prob(self, row: np.ndarray) -> float:
        """log P(row) of a fully observed row."""
        a = self._start(int(row[0]))
        logz = 0.0
        for t in row[1:]:
            a = self._step(a) * self._emit(int(t))
            s = a.sum()
            a /= s
            logz += math.log(s)
        return logz + math.log(a.sum())

    def log_prob_visible(self, row: np.ndarray, noise_mask: np.ndarray) -> float:
        """log of the total probability of every (row', mask') with the same corrupted
        inputs as (row, noise_mask): the visible tokens fixed, the noise-span contents
        AND the noise-span lengths summed over. Spans as in T5: the row starts with a
        non-noise span, ends with a noise span, and every span is non-empty.

        T5's mask is uniform over the compositions of the noise and non-noise counts,
        so every mask consistent with the inputs has the same probability and
        P(targets | inputs) = P(row) / sum_{consistent masks, noise contents} P(row').
        Dynamic programme: G[u] = forward weights after the spans seen so far, having
        used u noise tokens.
        """
        row, mask = np.asarray(row), np.asarray(noise_mask, bool)
        n = int(mask.sum())
        # Visible runs, in order; the noise runs between them have unknown lengths.
        change = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
        bounds = np.concatenate([[0], change, [len(row)]])
        visible = [row[b:e] for b, e, m in zip(bounds[:-1], bounds[1:], mask[bounds[:-1]]) if not m]
        a = self._start(int(visible[0][0]))
        logz = 0.0
        for t in visible[0][1:]:
            a = self._step(a) * self._emit(int(t))
            s = a.sum(); a /= s; logz += math.log(s)
        G = np.zeros((n + 1, self.num_states))
        G[0] = a[0]
        for i in range(len(visible)):
            H = np.zeros_like(G)
            cur = G
            for k in range(1, n + 1):
                cur = self._step(cur[: n + 1 - k])  # rows u <= n-k can still take k more
                H[k:] += cur
            G = H
            if i + 1 < len(visible):
                for t in visible[i + 1]:
                    G = self._step(G) * self._emit(int(t))
                    s = G.sum(); G /= s; logz += math.log(s)
        return logz + math.log(G[n].sum())


@functools.lru_cache(maxsize=8)
def language(spec: LanguageSpec, num_tokens: int) -> ZipfPhraseLanguage:
    return ZipfPhraseLanguage(spec, num_tokens)


class ToyT5Stream:
    """Span-corrupted rows of the synthetic language, in the T5 batch format.

    Each row is `tokens_length` raw tokens (`span_corruption.fit_lengths`: T5's
    `random_spans_helper(inputs_length)` when the targets fit, as for 512/114),
    corrupted with noise density 0.15 and mean span 3; sentinels take the top
    `num_sentinels` ids of `vocab_size`, content tokens the ids 2 .. below them.
    """

    family = "t5"

    def __init__(self, *, vocab_size: int, inputs_length: int, targets_length: int,
                 seed: int, split: str = "train", spec: LanguageSpec = LANGUAGE_SPECS["toy"]):
        self.seed, self.split, self.spec = int(seed), split, spec
        self._split_id = split_id(split)
        self.inputs_length, self.vocab_size = int(inputs_length), int(vocab_size)
        self.targets_length = int(targets_length)
        self.tokens_length = sc.fit_lengths(self.inputs_length, self.targets_length)
        self.num_noise, self.num_sentinels = sc.noise_counts(self.tokens_length)
        num_tokens = self.vocab_size - 2 - self.num_sentinels
        if num_tokens < 2:
            raise InputError(f"vocab_size {vocab_size} too small for {self.num_sentinels} sentinels")
        self.language = language(spec, num_tokens)
        self.units_per_example = self.inputs_length  # D counts input tokens (paper-data README)

    # -- the batch's random draws: jax.random under a key of (tag, seed, split, index, batch)
    def draws(self, key, batch_size: int) -> dict:
        L = self.tokens_length
        k_rows, k_noise, k_nonnoise = jax.random.split(key, 3)
        return {**self.language.draws(k_rows, batch_size, L),
                "noise": jax.random.uniform(k_noise, (batch_size, self.num_noise - 1)),
                "nonnoise": jax.random.uniform(k_nonnoise, (batch_size, L - self.num_noise - 1))}

    def _corrupt_reference(self, draws: dict):
        """(rows, noise mask, batch) from the draws, in numpy: the readable reference."""
        draws = {k: np.asarray(v) for k, v in draws.items()}
        rows = self.language.rows_from_draws(draws, self.tokens_length)
        mask = sc.noise_mask_from_keys(draws["noise"], draws["nonnoise"], self.tokens_length)
        top = self.vocab_size - 1
        return rows, mask, {
            "inputs": sc.noise_span_to_unique_sentinel(rows, mask, top, self.inputs_length),
            "targets": sc.nonnoise_span_to_unique_sentinel(rows, mask, top, self.targets_length),
        }

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """The host reference: the batch `device_batch_fn(batch_size)` builds on the device."""
        key = stream_key(_T5_TAG, self.seed, self._split_id, int(index), int(batch_size))
        return self._corrupt_reference(_host_draws(self.draws, key, int(batch_size)))[2]

    def device_batch_fn(self, batch_size: int):
        """fn(seed, split_id, index) -> {"inputs", "targets"}: this stream's batch `index` (for
        any seed and split) built on the device with jax.numpy; pure and jit/vmap/scan-compatible.
        Equals `batch` for the stream's own (seed, split) (tests/test_data.py)."""
        B, L, top = int(batch_size), self.tokens_length, self.vocab_size - 1
        lang, inputs_length, targets_length = self.language, self.inputs_length, self.targets_length

        def fn(seed, split, index):
            d = self.draws(stream_key(_T5_TAG, seed, split, index, B), B)
            rows = lang.jax_rows_from_draws(d, L)
            mask = sc.jax_noise_mask_from_keys(d["noise"], d["nonnoise"], L)
            return {"inputs": sc.jax_spans_to_sentinels(rows, mask, top, inputs_length),
                    "targets": sc.jax_spans_to_sentinels(rows, ~mask, top, targets_length)}

        return fn

    @property
    def irreducible_loss(self) -> float:
        """Bayes loss per non-pad target token (nats): see `t5_irreducible_loss`."""
        return t5_irreducible_loss(self.spec, self.vocab_size, self.inputs_length, self.targets_length)[0]


@functools.lru_cache(maxsize=16)
def t5_irreducible_loss(spec: LanguageSpec, vocab_size: int, inputs_length: int,
                        targets_length: int, num_examples: int = 128) -> tuple[float, float]:
    """(estimate, standard error) of the T5 toy stream's irreducible loss.

    The model's loss is the mean over non-pad target tokens of -log q(target token |
    inputs, earlier targets); its minimum over all q is reached by the true conditional,
    where it equals E[-log P(targets | inputs)] / (targets per row) -- every row has the
    same number of targets, num_noise + num_spans + 1. -log P(targets | inputs) is
    computed exactly per row (`ZipfPhraseLanguage.log_prob` minus `log_prob_visible`,
    an exact forward algorithm); the expectation is a Monte-Carlo mean over
    `num_examples` rows of a stream that is neither train nor eval, hence the standard
    error. Independent of the stream's seed.
    """
    stream = ToyT5Stream(vocab_size=vocab_size, inputs_length=inputs_length,
                         targets_length=targets_length, seed=0, spec=spec)
    key = stream_key(_T5_TAG, spec.task_seed, _ESTIMATE_SPLIT, 0, num_examples)
    rows, mask, _ = stream._corrupt_reference(_host_draws(stream.draws, key, num_examples))
    lang = stream.language
    nll = np.array([lang.log_prob_visible(r, m) - lang.log_prob(r) for r, m in zip(rows, mask)])
    per_row = stream.num_noise + stream.num_sentinels + 1
    return float(nll.mean() / per_row), float(nll.std(ddof=1) / math.sqrt(len(nll)) / per_row)


# --------------------------------------------------------------------------- images


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The synthetic multi-label image task's knobs (the JFT stand-in).

    An image is a grid of cells (cell x cell pixels: the ViT's patches). Every cell shows
    one motif, drawn independently of the other cells: a labelled motif with probability
    `label_rate`, else a distractor.

    num_patterns: P labelled motifs (the "pieces of knowledge"; a model must learn each), dealt
        round-robin to the K classes: with P > K a class has several looks.
    pattern_zipf: labelled motif i (i = 1..P) is drawn with probability proportional to
        i**-pattern_zipf: the rare motifs take many examples to learn, and capacity to store.
    label_rate: probability that a cell shows a labelled motif.
    num_distractors: unlabelled motifs (uniform among themselves): clutter that names no class.
    label_noise: eta, each of the K labels is flipped independently with this probability.
    cell: motif size in pixels (use the ViT's patch size: one patch embedding sees a motif).
    smoothness: std (pixels) of the Gaussian blur that makes motifs smooth fields (0: white).
    amplitude: a shown motif gets a uniform random weight in this range (> 0).
    task_seed: fixes the motifs.
    """

    num_patterns: int = 256
    pattern_zipf: float = 1.1
    label_rate: float = 0.2
    num_distractors: int = 256
    label_noise: float = 0.01
    cell: int = 8
    smoothness: float = 1.0
    amplitude: tuple[float, float] = (0.5, 1.5)
    task_seed: int = 0

    def validate(self) -> "ImageSpec":
        if not 0.0 <= self.label_noise < 0.5:
            raise InputError(f"ImageSpec.label_noise must be in [0, 0.5), got {self.label_noise}")
        if not 0.0 < self.amplitude[0] <= self.amplitude[1]:
            raise InputError(f"ImageSpec.amplitude must be positive, got {self.amplitude}")
        if self.num_patterns < 1 or self.num_distractors < 1:
            raise InputError(f"ImageSpec needs >= 1 labelled and >= 1 distractor motif: {self}")
        if not 0.0 < self.label_rate < 1.0:
            raise InputError(f"ImageSpec.label_rate must be in (0, 1), got {self.label_rate}")
        if self.cell < 1:
            raise InputError(f"ImageSpec.cell must be >= 1, got {self.cell}")
        return self


IMAGE_SPECS = {
    # cell = the preset's ViT patch size (models.vit.BASES)
    "smoke": ImageSpec(num_patterns=64, num_distractors=16, cell=4),
    # toy: one class per labelled motif (models.vit.BASES["toy"] has K = 256), so that a class is a
    # small share of the loss; label noise 1e-3 keeps the irreducible loss K * H_b(eta) at 2.0
    # (at 0.01 it would be 14.4: every image would carry 2.6 false labels). Why (2026-12-02): with
    # K = 16 a class held 0.2-0.7 nats, learned or not (per-class eval losses of the toy sweep's
    # checkpoints), and which classes a run had learned made the seed spread.
    "toy": ImageSpec(label_noise=0.001),
    "full": ImageSpec(num_patterns=65536, num_distractors=4096, cell=16),
}


class MotifImages:
    """P labelled + P_d distractor motifs (smooth random cell x cell fields of unit RMS);
    each cell of an image shows one, drawn i.i.d. per cell, at a random positive weight.

    Labelled motif i belongs to class i mod K. Classes present in an image (z) are those of
    its labelled motifs; labels are z with each entry flipped with probability eta. A motif
    may land in any cell, so what a class looks like is translation-invariant, as objects in
    photos are, and a ViT's shared patch embedding sees each motif whole. Capacity and data
    both bind: telling hundreds of motifs apart takes width, and the rare (Zipf-tail)
    motifs take many examples.
    """

    _MAX_ELEMENTS = 200_000_000

    def __init__(self, spec: ImageSpec, num_classes: int, height: int, width: int, channels: int):
        spec.validate()
        self.spec, self.K = spec, int(num_classes)
        self.shape = (int(height), int(width), int(channels))
        c = spec.cell
        if height % c or width % c:
            raise InputError(f"images of {height}x{width} pixels are not a grid of {c}x{c} cells "
                             "(ImageSpec.cell must divide the image size)")
        self.grid = (height // c, width // c)
        self.cells = self.grid[0] * self.grid[1]
        self.P, self.Pd = max(spec.num_patterns, self.K), spec.num_distractors
        total = self.P + self.Pd
        if total * c * c * channels > self._MAX_ELEMENTS:
            raise InputError(f"{total} motifs of {c}x{c}x{channels} are too many; "
                             "pass a real image source or a smaller ImageSpec")
        rng = np.random.default_rng([spec.task_seed, 0x1A9E])
        noise = rng.standard_normal((total, c, c, channels))
        fy = np.fft.fftfreq(c)[:, None, None]
        fx = np.fft.fftfreq(c)[None, :, None]
        blur = np.exp(-2 * (np.pi * spec.smoothness) ** 2 * (fy**2 + fx**2))
        fields = np.real(np.fft.ifft2(np.fft.fft2(noise, axes=(1, 2)) * blur, axes=(1, 2)))
        fields /= np.sqrt((fields**2).mean(axis=(1, 2, 3), keepdims=True))
        self.motifs = fields.astype(np.float32)
        # class of each motif; K = "no class" for distractors
        self.motif_class = np.concatenate([np.arange(self.P) % self.K, np.full(self.Pd, self.K)]).astype(np.int32)
        prob = np.concatenate([spec.label_rate * zipf(self.P, spec.pattern_zipf),
                               np.full(self.Pd, (1.0 - spec.label_rate) / self.Pd)])
        # Sampling inverts this float32 CDF on the host and on the device alike.
        self.cdf = np.cumsum(prob).astype(np.float32)
        self.cdf[-1] = 1.0
        self.motif_prob = np.diff(self.cdf.astype(np.float64), prepend=0.0)

    def draws(self, key, batch: int) -> dict:
        """The random draws of `batch` images (jax.random)."""
        k_motif, k_weight, k_flip = jax.random.split(key, 3)
        lo, hi = self.spec.amplitude
        return {"motif": jax.random.uniform(k_motif, (batch, self.cells)),
                "weight": jax.random.uniform(k_weight, (batch, self.cells), minval=lo, maxval=hi),
                "flip": jax.random.uniform(k_flip, (batch, self.K))}

    def from_draws(self, draws: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images [B,H,W,C] float32, clean labels z [B,K], noisy labels y [B,K]) from the
        draws, one cell at a time: the readable reference of `jax_from_draws`."""
        u, weight, flip = (np.asarray(draws[k]) for k in ("motif", "weight", "flip"))
        batch = u.shape[0]
        c, (gh, gw), ch = self.spec.cell, self.grid, self.shape[2]
        images = np.zeros((batch,) + self.shape, np.float32)
        z = np.zeros((batch, self.K), bool)
        for b in range(batch):
            for j in range(self.cells):
                m = int(np.searchsorted(self.cdf, u[b, j], side="right"))  # first motif with cdf > u
                row, col = divmod(j, gw)
                images[b, row * c:(row + 1) * c, col * c:(col + 1) * c] = self.motifs[m] * weight[b, j]
                if m < self.P:
                    z[b, self.motif_class[m]] = True
        y = z ^ (flip < self.spec.label_noise)
        return images, z.astype(np.float32), y.astype(np.float32)

    def jax_from_draws(self, draws: dict):
        """`from_draws` in jax.numpy (pure; jit/vmap/scan-compatible): (images, z, y)."""
        import jax.numpy as jnp

        m = jnp.searchsorted(jnp.asarray(self.cdf), draws["motif"], side="right")
        batch = m.shape[0]
        c, (gh, gw), ch = self.spec.cell, self.grid, self.shape[2]
        cells = jnp.asarray(self.motifs)[m] * draws["weight"][..., None, None, None]
        images = cells.reshape(batch, gh, gw, c, c, ch).transpose(0, 1, 3, 2, 4, 5).reshape((batch,) + self.shape)
        z = (jnp.asarray(self.motif_class)[m][..., None] == jnp.arange(self.K)).any(axis=1)
        y = z ^ (draws["flip"] < self.spec.label_noise)
        return images.astype(jnp.float32), z.astype(jnp.float32), y.astype(jnp.float32)

    @property
    def irreducible_loss(self) -> float:
        """K * H_b(eta), exact: each cell holds one motif times a weight >= amplitude[0] > 0,
        and no two motifs are positive multiples of each other (continuous random fields;
        `tests/test_data.py` checks), so the motifs shown, hence the clean labels z, are a
        deterministic function of the image. Given z, label k is 1 with probability 1-eta
        (z_k=1) or eta (z_k=0), so the Bayes sigmoid cross-entropy, summed over the K
        classes as the ViT loss is, is K * H_b(eta) for every image."""
        return self.K * binary_entropy(self.spec.label_noise)

    def class_rates(self) -> np.ndarray:
        """P(z_k = 1) for each class k: 1 - (1 - mass of class k's motifs)^cells."""
        mass = np.bincount(self.motif_class, weights=self.motif_prob, minlength=self.K + 1)[: self.K]
        return 1.0 - (1.0 - mass) ** self.cells

    def prior_logits(self) -> np.ndarray:
        """logit P(y_k = 1) for each class k: where a sigmoid head's bias starts for the toy
        ViT (models.vit.BASES["toy"]), so that the first steps do not go into learning label
        frequencies (the label-frequency plateau of issue 11)."""
        eta = self.spec.label_noise
        r = self.class_rates()
        p = r * (1 - eta) + (1 - r) * eta
        return np.log(p / (1 - p))

    def prior_logit(self) -> float:
        """The mean over classes of `prior_logits`: one constant for the whole head, as
        big_vision's `init_head_bias` (models.vit.BASES["smoke"])."""
        return float(np.mean(self.prior_logits()))

    def label_frequency_loss(self) -> float:
        """The loss of the best predictor that ignores the image (label frequencies): the sum
        over classes of H_b(P(y_k = 1)). The gap to `irreducible_loss` is what a model can learn."""
        eta = self.spec.label_noise
        r = self.class_rates()
        return float(sum(binary_entropy(x * (1 - eta) + (1 - x) * eta) for x in r))


@functools.lru_cache(maxsize=8)
def motif_images(spec: ImageSpec, num_classes: int, height: int, width: int, channels: int) -> MotifImages:
    return MotifImages(spec, num_classes, height, width, channels)


class ToyViTStream:
    """Multi-label batches {"image": [B,H,W,C] float32, "labels": [B,K] float32 multi-hot}."""

    family = "vit"
    units_per_example = 1

    def __init__(self, *, num_classes: int, image_size: int | tuple[int, int], channels: int,
                 seed: int, split: str = "train", spec: ImageSpec = IMAGE_SPECS["toy"]):
        self.seed, self.split, self.spec = int(seed), split, spec
        self._split_id = split_id(split)
        h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        self.images = motif_images(spec, int(num_classes), int(h), int(w), int(channels))

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """The host reference: the batch `device_batch_fn(batch_size)` builds on the device."""
        key = stream_key(_VIT_TAG, self.seed, self._split_id, int(index), int(batch_size))
        image, _, labels = self.images.from_draws(_host_draws(self.images.draws, key, int(batch_size)))
        return {"image": image, "labels": labels}

    def device_batch_fn(self, batch_size: int):
        """fn(seed, split_id, index) -> {"image", "labels"} built on the device (pure;
        jit/vmap/scan-compatible); equals `batch` for the stream's own (seed, split)."""
        B, images = int(batch_size), self.images

        def fn(seed, split, index):
            image, _, labels = images.jax_from_draws(images.draws(stream_key(_VIT_TAG, seed, split, index, B), B))
            return {"image": image, "labels": labels}

        return fn

    @property
    def irreducible_loss(self) -> float:
        return self.images.irreducible_loss
