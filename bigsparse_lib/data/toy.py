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
  (Zipf-frequent, several present per image, many per class) name the classes present,
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

import numpy as np

from bigsparse_lib.data import span_corruption as sc
from bigsparse_lib.errors import InputError

SPLIT_IDS = {"train": 0, "eval": 1}
_ESTIMATE_SPLIT = 2  # a third stream, used only to estimate the irreducible loss
_T5_TAG, _VIT_TAG = 5, 7  # keep T5 and ViT draws apart even with equal seeds


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
        self.p = zipf(R, spec.phrase_zipf)
        self.cdf = np.cumsum(self.p)
        self.cdf[-1] = 1.0
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
    def sample(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        """[batch, length] content-token rows (ids from first_id), each the start of a fresh stream."""
        k = -(-length // self.spec.min_len)  # enough phrases to cover `length`
        ids = np.searchsorted(self.cdf, rng.random((batch, k)), side="right")
        valid = np.arange(self.spec.max_len) < self.lengths[ids][..., None]
        tokens = self.table[ids].reshape(batch, -1)
        valid = valid.reshape(batch, -1)
        keep = valid & (np.cumsum(valid, axis=1) <= length)
        rows = tokens[keep].reshape(batch, length)
        if self.spec.noise > 0:
            flip = rng.random((batch, length)) < self.spec.noise
            rows = np.where(flip, rng.integers(0, self.V, size=(batch, length)), rows)
        return (rows + self.first_id).astype(np.int32)

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

    def _corrupt(self, rng, batch_size):
        rows = self.language.sample(rng, batch_size, self.tokens_length)
        mask = sc.random_spans_noise_mask(rng, batch_size, self.tokens_length)
        top = self.vocab_size - 1
        return rows, mask, {
            "inputs": sc.noise_span_to_unique_sentinel(rows, mask, top, self.inputs_length),
            "targets": sc.nonnoise_span_to_unique_sentinel(rows, mask, top, self.targets_length),
        }

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self._split_id, int(index), int(batch_size), _T5_TAG])
        return self._corrupt(rng, batch_size)[2]

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
    rng = np.random.default_rng([spec.task_seed, _ESTIMATE_SPLIT, _T5_TAG])
    rows, mask, _ = stream._corrupt(rng, num_examples)
    lang = stream.language
    nll = np.array([lang.log_prob_visible(r, m) - lang.log_prob(r) for r, m in zip(rows, mask)])
    per_row = stream.num_noise + stream.num_sentinels + 1
    return float(nll.mean() / per_row), float(nll.std(ddof=1) / math.sqrt(len(nll)) / per_row)


# --------------------------------------------------------------------------- images


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The synthetic multi-label image task's knobs (the JFT stand-in).

    num_patterns: labelled motifs, dealt round-robin to the K classes, so a class has many
        looks (the "pieces of knowledge"; a model must learn each look).
    pattern_zipf: motif i (i = 1..P) is present with probability proportional to
        i**-pattern_zipf, scaled so that `mean_patterns` are present per image (capped at 0.5).
    num_distractors / distractor_rate: unlabelled motifs, each present with this probability.
    label_noise: eta, each of the K labels is flipped independently with this probability.
    cell: a motif is a cell x cell patch; the image is a grid of such cells (use the ViT's
        patch size, so that a motif is what one patch embedding sees).
    smoothness: std (pixels) of the Gaussian blur that makes motifs smooth fields.
    amplitude: a present motif gets a uniform random weight in this range (> 0).
    task_seed: fixes the motifs.
    """

    num_patterns: int = 256
    pattern_zipf: float = 1.1
    mean_patterns: float = 3.0
    num_distractors: int = 256
    distractor_rate: float = 0.02
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
        if self.num_patterns < 1 or self.num_distractors < 0:
            raise InputError(f"bad ImageSpec pattern counts: {self}")
        if self.cell < 1:
            raise InputError(f"ImageSpec.cell must be >= 1, got {self.cell}")
        return self


IMAGE_SPECS = {
    # cell = the preset's ViT patch size (models.vit.BASES)
    "smoke": ImageSpec(num_patterns=64, num_distractors=16, distractor_rate=0.1, cell=4),
    "toy": ImageSpec(),
    "full": ImageSpec(num_patterns=65536, num_distractors=4096, cell=16),
}


class MotifImages:
    """P labelled + P_d distractor motifs (smooth random cell x cell fields of unit RMS),
    placed at distinct, uniformly random cells of an otherwise blank image.

    Labelled motif i belongs to class i mod K. Classes present in an image (z) are those
    with at least one present motif; labels are z with each entry flipped with
    probability eta. A motif may land in any cell, so what a class looks like is
    translation-invariant, as objects in photos are, and a ViT's shared patch embedding
    sees each motif whole. Capacity and data both bind: telling hundreds of motifs apart
    takes width, and the rare (Zipf-tail) motifs take many examples.
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
        self.pattern_class = np.arange(self.P) % self.K
        self.pattern_prob = np.minimum(zipf(self.P, spec.pattern_zipf) * spec.mean_patterns, 0.5)
        self._by_class = np.argsort(self.pattern_class, kind="stable")
        self._class_starts = np.searchsorted(self.pattern_class[self._by_class], np.arange(self.K))
        self.present_prob = np.concatenate([self.pattern_prob, np.full(self.Pd, spec.distractor_rate)])
        self._present_cdf = np.cumsum(self.present_prob) / self.present_prob.sum()
        self._present_cdf[-1] = 1.0

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images [B,H,W,C] float32, clean labels z [B,K], noisy labels y [B,K])."""
        lo, hi = self.spec.amplitude
        present = rng.random((batch, self.P + self.Pd)) < self.present_prob
        # An image shows at least one motif: no blank (hence repeated) images.
        blank = ~present.any(axis=1)
        pick = np.searchsorted(self._present_cdf, rng.random(batch), side="right")
        present[blank, pick[blank]] = True
        # At most one motif per cell: beyond `cells` present motifs, the highest-numbered
        # (distractors first, then the rarest labelled motifs) are left out of the image.
        cols = np.argsort(~present, axis=1, kind="stable")[:, :self.cells]  # present motifs, in index order
        counts = np.minimum(present.sum(axis=1), self.cells)
        valid = np.arange(cols.shape[1]) < counts[:, None]
        shown = np.zeros_like(present)
        np.put_along_axis(shown, cols, valid, axis=1)
        # A class is present if any of its shown motifs is (motifs grouped by class).
        z = np.logical_or.reduceat(shown[:, self._by_class], self._class_starts, axis=1)
        weight = rng.uniform(lo, hi, size=cols.shape).astype(np.float32)
        where = np.argsort(rng.random((batch, self.cells)), axis=1)[:, :cols.shape[1]]  # distinct random cells
        c, (gh, gw), ch = self.spec.cell, self.grid, self.shape[2]
        grid = np.zeros((batch, self.cells, c, c, ch), np.float32)
        b, j = np.nonzero(valid)
        grid[b, where[b, j]] = self.motifs[cols[b, j]] * weight[b, j, None, None, None]
        images = grid.reshape(batch, gh, gw, c, c, ch).transpose(0, 1, 3, 2, 4, 5).reshape((batch,) + self.shape)
        y = z ^ (rng.random((batch, self.K)) < self.spec.label_noise)
        return images, z.astype(np.float32), y.astype(np.float32)

    @property
    def irreducible_loss(self) -> float:
        """K * H_b(eta), exact: each cell holds at most one motif, times a weight >= amplitude[0] > 0,
        and no two motifs are positive multiples of each other (continuous random fields;
        `tests/test_data.py` checks), so the set of motifs shown, hence the clean labels z,
        is a deterministic function of the image. Given z, label k is 1 with probability
        1-eta (z_k=1) or eta (z_k=0), so the Bayes sigmoid cross-entropy, summed over the K
        classes as the ViT loss is, is K * H_b(eta) for every image."""
        return self.K * binary_entropy(self.spec.label_noise)


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
        rng = np.random.default_rng([self.seed, self._split_id, int(index), int(batch_size), _VIT_TAG])
        image, _, labels = self.images.sample(rng, batch_size)
        return {"image": image, "labels": labels}

    @property
    def irreducible_loss(self) -> float:
        return self.images.irreducible_loss
