"""Data streams: T5 span corruption against independent reimplementations, the toy streams'
purity/disjointness and exact likelihoods, and the real C4 / image-folder loaders on tiny
fixtures made here."""
from __future__ import annotations

import gzip
import itertools
import json
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bigsparse_lib import data
from bigsparse_lib.data import span_corruption as sc
from bigsparse_lib.data import toy
from bigsparse_lib.errors import InputError

T5_SMALL = SimpleNamespace(vocab_size=128, input_length=32, target_length=8)
VIT_SMALL = SimpleNamespace(num_classes=8, image_size=16, channels=3)


# ----------------------------------------------------------------- independent references


def t5_lengths(length: int) -> tuple[int, int]:
    """T5's random_spans_noise_mask arithmetic, written out again (round half to even)."""
    n = min(max(int(round(length * 0.15)), 1), length - 1)
    return n, max(int(round(n / 3.0)), 1)


def runs(mask_row) -> list[tuple[bool, int]]:
    return [(bool(k), len(list(g))) for k, g in itertools.groupby(mask_row)]


def merge(inputs, targets, first_sentinel: int) -> list[int]:
    """Undo span corruption: put each target span back where its sentinel is in the inputs."""
    spans, cur = {}, None
    for t in targets:
        if t == sc.EOS_ID:
            break
        if t >= first_sentinel:
            cur = int(t)
            spans[cur] = []
        else:
            spans[cur].append(int(t))
    out = []
    for t in inputs:
        if t == sc.EOS_ID:
            break
        out.extend(spans[int(t)] if t >= first_sentinel else [int(t)])
    return out


def sentinels(row, first_sentinel: int) -> list[int]:
    return [int(t) for t in row if t >= first_sentinel]


def check_span_batch(batch, rows, vocab_top: int, first_sentinel: int):
    """Reconstruction and sentinel order for a batch whose raw rows are known."""
    for inp, tgt, row in zip(batch["inputs"], batch["targets"], rows):
        assert merge(inp, tgt, first_sentinel) == [int(t) for t in row]
        s_in = sentinels(inp, first_sentinel)
        assert s_in == list(range(vocab_top, vocab_top - len(s_in), -1))  # descending from the top
        assert sentinels(tgt, first_sentinel) == s_in
        for seq in (inp, tgt):  # one EOS, then only padding
            eos = list(seq).index(sc.EOS_ID)
            assert not np.any(seq[eos + 1:])


# ----------------------------------------------------------------- span corruption


def test_length_arithmetic_matches_t5():
    for length in range(2, 700):
        assert sc.noise_counts(length) == t5_lengths(length)
    # T5's published task lengths: 512 inputs <- 568 raw tokens, 114 targets.
    assert sc.random_spans_helper(512) == (568, 114)
    assert sc.fit_lengths(512, 114) == 568
    assert sc.fit_lengths(16, 4) == 16  # targets too short for T5's 17: shorten the row


@pytest.mark.parametrize("length", [10, 31, 70, 568])
def test_noise_mask_structure(length):
    n, s = t5_lengths(length)
    masks = sc.random_spans_noise_mask(np.random.default_rng(length), 64, length)
    for m in masks:
        r = runs(m)
        assert m.sum() == n
        assert sum(noise for noise, _ in r) == s  # s noise runs...
        assert len(r) == 2 * s and not r[0][0] and r[-1][0]  # ...interleaved, non-noise first


def test_segmentation_is_uniform_over_compositions():
    # 5 noise tokens in 2 spans: the 4 compositions (1,4) (2,3) (3,2) (4,1), 1/4 each.
    lengths = sc._random_segmentation(np.random.default_rng(0), 20000, 5, 2)
    assert np.all(lengths.sum(1) == 5) and lengths.min() >= 1
    freq = np.bincount(lengths[:, 0], minlength=5)[1:] / len(lengths)
    np.testing.assert_allclose(freq, 0.25, atol=0.015)  # ~5 sigma


def test_span_corrupt_reconstructs_and_density():
    rng = np.random.default_rng(1)
    rows = rng.integers(2, 900, size=(64, 568))
    batch = sc.span_corrupt(rows, rng, vocab_size=1000, inputs_length=512, targets_length=114)
    assert batch["inputs"].shape == (64, 512) and batch["targets"].shape == (64, 114)
    assert batch["inputs"].dtype == np.int32
    check_span_batch(batch, rows, 999, 900)
    n_sent = np.array([len(sentinels(t, 900)) for t in batch["targets"]])
    noise = (batch["targets"] > 1).sum(1) - n_sent
    assert np.all(noise == 85) and np.all(n_sent == 28)  # round(568*.15)=85, round(85/3)=28
    assert abs(noise.mean() / 568 - 0.15) < 0.001 and abs(noise.sum() / n_sent.sum() - 3) < 0.05


# ----------------------------------------------------------------- toy language


def brute_log_prob(lang: toy.ZipfPhraseLanguage, row) -> float:
    """log P(row) by enumerating every phrase sequence that covers the row."""
    eps, V = lang.spec.noise, lang.V
    x = [int(t) - lang.first_id for t in row]
    total = 0.0

    def walk(pos, prob):
        nonlocal total
        if pos >= len(x):
            total += prob
            return
        for r in range(len(lang.p)):
            p = prob * lang.p[r]
            for j in range(lang.lengths[r]):
                if pos + j >= len(x):
                    break
                hit = lang.table[r, j] == x[pos + j]
                p *= (1 - eps + eps / V) if hit else eps / V
            walk(pos + lang.lengths[r], p)

    walk(0, 1.0)
    return math.log(total)


def test_language_likelihoods_match_enumeration():
    spec = toy.LanguageSpec(num_phrases=3, min_len=1, max_len=2, noise=0.1, task_seed=3)
    lang = toy.ZipfPhraseLanguage(spec, num_tokens=3)
    import jax

    row = lang.rows_from_draws(lang.draws(jax.random.key(0), 1, 8), 8)[0]
    assert lang.log_prob(row) == pytest.approx(brute_log_prob(lang, row), rel=1e-10)
    # Visible: 2 tokens, 3 hidden, 3 tokens, then the hidden tail; the 3 hidden noise
    # tokens split (1, 2) or (2, 1) over the 2 noise spans, contents summed over.
    mask = np.array([0, 0, 1, 0, 0, 0, 1, 1], bool)
    visible = [row[0], row[1], row[3], row[4], row[5]]
    total = 0.0
    for first in (1, 2):
        for hidden in itertools.product(range(2, 5), repeat=3):
            full = visible[:2] + list(hidden[:first]) + visible[2:] + list(hidden[first:])
            total += math.exp(brute_log_prob(lang, full))
    assert lang.log_prob_visible(row, mask) == pytest.approx(math.log(total), rel=1e-10)


def test_toy_t5_stream_format_and_purity():
    ds = data.make("t5", T5_SMALL, seed=0, source=toy.LanguageSpec(num_phrases=64, max_len=4))
    # 34 raw tokens: 5 noise in 2 spans, 34 - 5 + 2 + EOS = 32 inputs (35 would give 33).
    assert ds.units_per_example == 32 and ds.tokens_length == 34
    b = ds.batch(3, 16)
    assert b["inputs"].shape == (16, 32) and b["targets"].shape == (16, 8)
    assert b["inputs"].dtype == np.int32 and b["targets"].dtype == np.int32
    for k in b:
        np.testing.assert_array_equal(b[k], ds.batch(3, 16)[k])
        np.testing.assert_array_equal(b[k], data.make("t5", T5_SMALL, seed=0, source=ds.spec).batch(3, 16)[k])
    first_sentinel = 128 - ds.num_sentinels
    content = b["inputs"][(b["inputs"] > 1) & (b["inputs"] < first_sentinel)]
    assert content.min() >= 2
    # Reconstructed rows are language rows; sentinels descend from vocab_size - 1.
    key = toy.stream_key(toy._T5_TAG, 0, 0, 3, 16)
    rows, _, again = ds._corrupt_reference(ds.draws(key, 16))
    np.testing.assert_array_equal(again["inputs"], b["inputs"])
    check_span_batch(b, rows, 127, first_sentinel)
    # Rows are phrases of the lexicon spelt out one after another (no token noise here).
    quiet = data.make("t5", T5_SMALL, seed=0, source=dataclasses.replace(ds.spec, noise=0.0))
    rows, _, _ = quiet._corrupt_reference(quiet.draws(key, 16))
    lang = quiet.language
    phrases = {tuple(lang.table[r, : lang.lengths[r]] + 2) for r in range(len(lang.lengths))}
    for row in rows:
        i = 0
        while i < len(row):  # greedy parse: some phrase must match here (or be cut by the end)
            assert any(tuple(row[i:i + len(p)]) == p[: len(row) - i] for p in phrases)
            i += next(len(p) for p in sorted(phrases, key=len, reverse=True) if tuple(row[i:i + len(p)]) == p[: len(row) - i])


def _stream_cases():
    """(family, model shapes, spec) at the smoke and toy presets."""
    from bigsparse_lib import models

    return [(f, models.get_family(f).BASES[p], (toy.LANGUAGE_SPECS if f == "t5" else toy.IMAGE_SPECS)[p])
            for f in ("t5", "vit") for p in ("smoke", "toy")]


@pytest.mark.parametrize("case", range(4), ids=["t5-smoke", "t5-toy", "vit-smoke", "vit-toy"])
def test_device_batches_equal_the_host_reference(case):
    import jax
    import jax.numpy as jnp

    family, shapes, spec = _stream_cases()[case]
    B = 8
    fn = jax.jit(data.make(family, shapes, seed=0, source=spec).device_batch_fn(B))  # one program for all
    for seed, split, index in ((0, "train", 0), (3, "train", 17), (3, "eval", 17), (11, "eval", 123456)):
        host = data.make(family, shapes, seed=seed, split=split, source=spec)
        dev = fn(jnp.int32(seed), jnp.int32(toy.split_id(split)), jnp.int32(index))
        ref = host.batch(index, B)
        assert set(dev) == set(ref)
        for k in ref:
            assert dev[k].dtype == ref[k].dtype and dev[k].shape == ref[k].shape
            np.testing.assert_array_equal(np.asarray(dev[k]), ref[k], err_msg=f"{family} {k} {seed} {split} {index}")
    # vmapped over seeds (as the engine's groups are), inside a scan over indices
    seeds = jnp.asarray([0, 3, 11], jnp.int32)
    fn = host.device_batch_fn(B)

    def body(carry, index):
        return carry, jax.vmap(fn, in_axes=(0, None, None))(seeds, jnp.int32(0), index)

    _, out = jax.jit(lambda: jax.lax.scan(body, 0, jnp.asarray([2, 5], jnp.int32)))()
    for r, seed in enumerate((0, 3, 11)):
        ref = data.make(family, shapes, seed=seed, split="train", source=spec)
        for t, index in enumerate((2, 5)):
            b = ref.batch(index, B)
            for k in b:
                np.testing.assert_array_equal(np.asarray(out[k][t, r]), b[k])


def test_device_batches_are_pure_and_depend_on_every_argument():
    import jax
    import jax.numpy as jnp

    for family, shapes, spec in _stream_cases()[::2]:
        fn = jax.jit(data.make(family, shapes, seed=0, source=spec).device_batch_fn(4))
        key = "inputs" if family == "t5" else "image"
        args = (jnp.int32(1), jnp.int32(0), jnp.int32(7))
        a = np.asarray(fn(*args)[key])
        np.testing.assert_array_equal(a, np.asarray(fn(*args)[key]))
        for i in range(3):
            other = list(args)
            other[i] = other[i] + 1
            assert not np.array_equal(a, np.asarray(fn(*other)[key]))
        # another batch size is another draw, not a prefix of this one
        b = np.asarray(jax.jit(data.make(family, shapes, seed=0, source=spec).device_batch_fn(2))(*args)[key])
        assert not np.array_equal(a[:2], b)


def test_toy_streams_never_repeat_and_splits_are_disjoint():
    for family, cfg in (("t5", T5_SMALL), ("vit", VIT_SMALL)):
        key = "inputs" if family == "t5" else "image"
        seen = {}
        for split, seed in (("train", 0), ("eval", 0), ("train", 1)):
            ds = data.make(family, cfg, seed=seed, split=split, source="synthetic")
            rows = np.concatenate([ds.batch(i, 32)[key].reshape(32, -1) for i in range(40)])
            seen[(split, seed)] = {r.tobytes() for r in rows}
            assert len(seen[(split, seed)]) == len(rows), (family, split)
        assert not seen[("train", 0)] & seen[("eval", 0)]
        assert not seen[("train", 0)] & seen[("train", 1)]


def test_toy_t5_irreducible_loss_beats_a_context_free_predictor():
    spec = toy.LANGUAGE_SPECS["smoke"]
    est, se = toy.t5_irreducible_loss(spec, 128, 32, 8)
    ds = data.make("t5", T5_SMALL, seed=0, source=spec)
    assert ds.irreducible_loss == est and 0 < se < 0.1 * est
    # Gibbs: the Bayes loss is below the loss of any normalised predictor, e.g. one that
    # ignores the inputs: uniform over span compositions and over content tokens.
    n, s = ds.num_noise, ds.num_sentinels
    per_row = math.log(math.comb(n - 1, s - 1)) + n * math.log(ds.language.V)
    assert est + 3 * se < per_row / (n + s + 1)


# ----------------------------------------------------------------- toy images


def test_toy_vit_stream_and_exact_irreducible_loss():
    spec = toy.ImageSpec(num_patterns=64, num_distractors=16, label_rate=0.3, label_noise=0.05, cell=4)
    ds = data.make("vit", VIT_SMALL, seed=0, source=spec)
    b = ds.batch(0, 8)
    assert b["image"].shape == (8, 16, 16, 3) and b["image"].dtype == np.float32
    assert b["labels"].shape == (8, 8) and set(np.unique(b["labels"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(b["image"], ds.batch(0, 8)["image"])
    assert ds.units_per_example == 1
    eta = 0.05
    assert ds.irreducible_loss == pytest.approx(8 * (-eta * math.log(eta) - (1 - eta) * math.log(1 - eta)))
    # Identifiability: no two motifs are positively collinear, and each cell holds one motif
    # at a positive weight, so reading the cells back recovers exactly which classes are
    # present (hence K*H_b(eta) is the Bayes loss).
    imgs = ds.images
    M = imgs.motifs.reshape(imgs.P + imgs.Pd, -1).astype(np.float64)
    unit = M / np.linalg.norm(M, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -1.0)
    assert cos.max() < 0.99
    n = 400
    images, z, y = imgs.from_draws(imgs.draws(toy.stream_key(99, 0, 0, 0, n), n))
    cells = images.reshape(n, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, 16, -1).astype(np.float64)
    z_hat = np.zeros_like(z, dtype=bool)
    labelled = 0
    for i in range(n):
        for j in range(16):
            v = cells[i, j] / np.linalg.norm(cells[i, j])  # every cell shows a motif: never blank
            k = int(np.argmax(unit @ v))
            assert unit[k] @ v > 1 - 1e-5  # the cell is a positive multiple of motif k
            weight = np.linalg.norm(cells[i, j]) / np.linalg.norm(M[k])
            assert spec.amplitude[0] - 1e-5 <= weight <= spec.amplitude[1] + 1e-5
            if k < imgs.P:
                z_hat[i, k % 8] = True
                labelled += 1
    np.testing.assert_array_equal(z_hat, z.astype(bool))
    # cells show labelled motifs at the spec's rate; classes are present at class_rates()
    assert abs(labelled / (16 * n) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / (16 * n))
    rates = imgs.class_rates()
    assert np.all(np.abs(z.mean(axis=0) - rates) < 4 * np.sqrt(rates * (1 - rates) / n) + 1e-9)
    flips = (z != y).mean()
    assert abs(flips - eta) < 4 * math.sqrt(eta * (1 - eta) / z.size)
    # label frequencies: the best image-blind loss, by its own formula, against the sample's
    p = y.mean(axis=0)
    blind = -np.mean(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1))
    assert blind == pytest.approx(imgs.label_frequency_loss(), rel=0.05)
    assert imgs.label_frequency_loss() > ds.irreducible_loss


@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_vit_head_bias_starts_at_the_label_prior(preset):
    """models.vit.BASES start the sigmoid head's bias at the task's prior logits (so the first
    steps are not spent learning label frequencies): smoke one constant, their mean; toy one per
    class. A retuned ImageSpec must move them."""
    from bigsparse_lib import models

    base = models.get_family("vit").BASES[preset]
    ds = data.make("vit", preset, seed=0)
    r = ds.images.class_rates()
    p = r * (1 - ds.spec.label_noise) + (1 - r) * ds.spec.label_noise  # P(y_k = 1), written out again
    want = np.log(p) - np.log1p(-p)
    assert ds.images.prior_logits() == pytest.approx(want)
    assert ds.images.prior_logit() == pytest.approx(np.mean(want))
    if preset == "smoke":
        assert abs(base.head_bias_init - ds.images.prior_logit()) < 0.1
    else:
        assert len(base.head_bias_init) == base.num_classes == ds.images.K
        assert np.asarray(base.head_bias_init) == pytest.approx(want, abs=1e-4)


def test_toy_vit_classes_are_small_shares_of_the_loss():
    """The toy ViT task (recipe 6): one class per labelled motif, so the most frequent class holds
    under a tenth of what a model can learn (label-frequency loss minus irreducible); with 16
    classes it held 0.5 of 6.1 nats, and the seed spread was which classes a run had learned."""
    ds = data.make("vit", "toy", seed=0)
    imgs = ds.images
    eta = ds.spec.label_noise
    q = imgs.class_rates() * (1 - eta) + (1 - imgs.class_rates()) * eta
    H = -(q * np.log(q) + (1 - q) * np.log1p(-q))  # each class's image-blind loss
    learnable = imgs.label_frequency_loss() - ds.irreducible_loss
    assert learnable == pytest.approx(float(np.sum(H)) - imgs.K * float(-(eta * np.log(eta) + (1 - eta) * np.log1p(-eta))))
    assert (H.max() - ds.irreducible_loss / imgs.K) / learnable < 0.1
    assert imgs.K == 256 and ds.irreducible_loss == pytest.approx(2.02426, rel=1e-5)  # 256 * H_b(0.001)


# ----------------------------------------------------------------- C4 loader

WORDS = ("the of and to in is was for on that with as by at from his her an are were this which "
         "be it has had not but they their one all new two time first year city state school").split()


def write_shard(path, n_docs, seed):
    rng = np.random.default_rng(seed)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(n_docs):
            text = " ".join(rng.choice(WORDS, size=rng.integers(20, 60)))
            f.write(json.dumps({"text": text, "timestamp": "2019-04-25T12:57:54Z",
                                "url": f"https://example.com/{seed}/{i}"}) + "\n")


@pytest.fixture(scope="module")
def c4_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("c4")
    write_shard(d / "c4-train.00000-of-00002.json.gz", 150, 0)
    write_shard(d / "c4-train.00001-of-00002.json.gz", 150, 1)
    data.train_sentencepiece(sorted(str(p) for p in d.glob("*.json.gz")), str(d / "spiece"), vocab_size=60)
    return d


def test_c4_stream(c4_dir):
    source = data.C4Source(path=str(c4_dir))
    cfg = SimpleNamespace(vocab_size=256, input_length=32, target_length=8)
    ds = data.make("t5", cfg, seed=0, source=source)
    sp_size = ds.sp.get_piece_size()
    assert sp_size == 60 and ds.vocab_size == 160 and ds.units_per_example == 32
    # Train reads shard 0 only; eval holds out the last train shard.
    assert [p.split("/")[-1] for p in ds.shards] == ["c4-train.00000-of-00002.json.gz"]
    b = ds.batch(2, 16)
    assert b["inputs"].shape == (16, 32) and b["targets"].shape == (16, 8)
    np.testing.assert_array_equal(b["inputs"], ds.batch(2, 16)["inputs"])
    resumed = data.make("t5", cfg, seed=0, source=source)  # a fresh process-like object
    np.testing.assert_array_equal(b["targets"], resumed.batch(2, 16)["targets"])
    # Each reconstructed row is a contiguous slice of the shard's concatenated tokens.
    ids = ds.sp.encode(data.c4.read_texts(ds.shards[0]))
    flat = np.concatenate([np.array(d) for d in ids])
    rows = flat[: len(flat) // ds.tokens_length * ds.tokens_length].reshape(-1, ds.tokens_length)
    index = {r.tobytes(): i for i, r in enumerate(rows.astype(np.int32))}
    got = [np.array(merge(i, t, sp_size), np.int32) for i, t in zip(b["inputs"], b["targets"])]
    assert all(g.tobytes() in index for g in got)
    check_span_batch(b, got, 159, sp_size)
    # Density 0.15 and mean span 3 over an epoch's worth of batches.
    targets = np.concatenate([ds.batch(i, 16)["targets"] for i in range(8)])
    n_sent = (targets >= sp_size).sum()
    noise = ((targets > 1) & (targets < sp_size)).sum()
    n, s = t5_lengths(ds.tokens_length)
    assert noise == n * len(targets) and n_sent == s * len(targets)
    assert abs(noise / (ds.tokens_length * len(targets)) - 0.15) < 0.02
    # No row repeats within an epoch; eval rows are disjoint from train rows.
    n_rows = len(rows)
    seen = [ds.locate(g)[0] for g in range(n_rows)]
    assert len(set(seen)) == n_rows
    ev = data.make("t5", cfg, seed=0, split="eval", source=source)
    eb = ev.batch(0, 16)
    ev_rows = {np.array(merge(i, t, sp_size), np.int32).tobytes() for i, t in zip(eb["inputs"], eb["targets"])}
    assert not ev_rows & set(index)


def test_c4_errors_name_the_path(c4_dir, tmp_path):
    cfg = SimpleNamespace(vocab_size=256, input_length=32, target_length=8)
    with pytest.raises(InputError, match="nowhere"):
        data.make("t5", cfg, seed=0, source=str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="no C4 train shards"):
        data.make("t5", cfg, seed=0, source=str(tmp_path))
    missing = tmp_path / "missing.model"
    with pytest.raises(InputError, match="missing.model"):
        data.make("t5", cfg, seed=0, source=data.C4Source(str(c4_dir), spm_model=str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("c4-train.00000-of-00002.json.gz", "c4-train.00001-of-00002.json.gz"):
        with gzip.open(empty / name, "wt") as f:
            f.write("")
    ds = data.make("t5", cfg, seed=0, source=data.C4Source(str(empty), spm_model=str(c4_dir / "spiece.model")))
    with pytest.raises(InputError, match="c4-train.00000-of-00002.json.gz"):
        ds.batch(0, 2)
    with pytest.raises(InputError, match="vocab_size"):
        data.make("t5", T5_SMALL, seed=0, source=str(c4_dir))  # 128 < 60 + 100 sentinels


# ----------------------------------------------------------------- image folder


def write_png(path, rgb):
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.broadcast_to(np.asarray(rgb, np.float32), (12, 10, 3)))


def test_image_folder_class_per_subfolder(tmp_path):
    colours = {"black": (0, 0, 0), "red": (1, 0, 0), "white": (1, 1, 1)}
    for name, rgb in colours.items():
        for i in range(8):
            write_png(tmp_path / name / f"{i}.png", rgb)
    src = data.ImageFolderSource(str(tmp_path), eval_fraction=0.3)
    tr = data.make("vit", VIT_SMALL, seed=0, source=src)
    ev = data.make("vit", VIT_SMALL, seed=0, split="eval", source=src)
    assert tr.classes == ["black", "red", "white"]
    assert len(tr.items) + len(ev.items) == 24 and len(ev.items) > 0
    assert not {p for p, _ in tr.items} & {p for p, _ in ev.items}
    b = tr.batch(0, 5)
    assert b["image"].shape == (5, 16, 16, 3) and b["labels"].shape == (5, 8)
    np.testing.assert_array_equal(b["image"], tr.batch(0, 5)["image"])
    # Each image's colour ([-1, 1] scaled) matches its one-hot label.
    expected = np.array([colours[tr.classes[k]] for k in b["labels"].argmax(1)]) * 2 - 1
    np.testing.assert_allclose(b["image"].mean(axis=(1, 2)), expected, atol=0.01)
    assert np.all(b["labels"].sum(1) == 1)
    # One epoch visits every training image once.
    n = len(tr.items)
    assert sorted(tr.examples(0, n)) == list(range(n))


def test_image_folder_multilabel_csv_and_errors(tmp_path):
    write_png(tmp_path / "a.png", (1, 0, 0))
    write_png(tmp_path / "b.png", (0, 1, 0))
    (tmp_path / "labels.csv").write_text("path,labels,split\na.png,cat dog,train\nb.png,dog,eval\n")
    tr = data.make("vit", VIT_SMALL, seed=0, source=str(tmp_path))
    assert tr.classes == ["cat", "dog"]
    np.testing.assert_array_equal(tr.batch(0, 1)["labels"][0], [1, 1, 0, 0, 0, 0, 0, 0])
    ev = data.make("vit", VIT_SMALL, seed=0, split="eval", source=str(tmp_path))
    np.testing.assert_array_equal(ev.batch(0, 1)["labels"][0], [0, 1, 0, 0, 0, 0, 0, 0])
    (tmp_path / "labels.csv").write_text("path,labels\nmissing.png,cat\n")
    with pytest.raises(InputError, match="missing.png"):
        data.make("vit", VIT_SMALL, seed=0, source=str(tmp_path))
    with pytest.raises(InputError, match="nowhere"):
        data.make("vit", VIT_SMALL, seed=0, source=str(tmp_path / "nowhere"))


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_field(number: int, payload: bytes) -> bytes:  # a length-delimited field
    return _pb_varint(number << 3 | 2) + _pb_varint(len(payload)) + payload


def encode_example(image: bytes, labels: list[int], key: str = "label", packed: bool = True) -> bytes:
    """A tf.train.Example, written from the protobuf spec (independent of the reader)."""
    ints = (_pb_field(1, b"".join(_pb_varint(k) for k in labels)) if packed
            else b"".join(_pb_varint(1 << 3 | 0) + _pb_varint(k) for k in labels))
    feats = {"image": _pb_field(1, _pb_field(1, image)), key: _pb_field(3, ints),
             "score": _pb_field(2, _pb_field(1, np.array([0.5, 2.0], "<f4").tobytes()))}
    entries = b"".join(_pb_field(1, _pb_field(1, k.encode()) + _pb_field(2, v)) for k, v in feats.items())
    return _pb_field(1, entries)


def write_tfrecord(path, records):
    import struct

    with open(path, "wb") as f:
        for r in records:
            f.write(struct.pack("<Q", len(r)) + b"\0" * 4 + r + b"\0" * 4)  # CRCs are not checked


def png_bytes(rgb) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.broadcast_to(np.asarray(rgb, np.uint8), (12, 10, 3)).copy()).save(buf, format="PNG")
    return buf.getvalue()


def test_tfds_directory_without_tensorflow(tmp_path):
    colours = {0: (0, 0, 0), 1: (255, 0, 0), 2: (255, 255, 255)}
    version = tmp_path / "colours" / "1.0.0"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    (version / "label.labels.txt").write_text("black\nred\nwhite\n")
    train = [encode_example(png_bytes(colours[k]), [k], packed=(i % 2 == 0)) for i, k in enumerate([0, 1, 2] * 4)]
    write_tfrecord(version / "colours-train.tfrecord-00000-of-00002", train[:5])
    write_tfrecord(version / "colours-train.tfrecord-00001-of-00002", train[5:])
    write_tfrecord(version / "colours-test.tfrecord-00000-of-00001",
                   [encode_example(png_bytes(colours[2]), [2, 1], key="labels")])
    tr = data.make("vit", VIT_SMALL, seed=0, source=str(tmp_path))  # the folder above the version folder
    ev = data.make("vit", VIT_SMALL, seed=0, split="eval", source=str(version))
    assert tr.classes == ["black", "red", "white"] and len(tr.items) == 12 and len(ev.items) == 1
    b = tr.batch(0, 6)
    expected = np.array([np.array(colours[k]) / 127.5 - 1 for k in b["labels"].argmax(1)])
    np.testing.assert_allclose(b["image"].mean(axis=(1, 2)), expected, atol=0.01)
    np.testing.assert_array_equal(ev.batch(0, 1)["labels"][0], [0, 1, 1, 0, 0, 0, 0, 0])
    # the reader's pieces, on their own
    from bigsparse_lib.data import images

    ex = images.parse_example(train[1])
    assert ex["label"] == [1] and ex["score"] == [0.5, 2.0] and ex["image"][0] == png_bytes(colours[1])
    # damage: a truncated shard names the file
    shard = version / "colours-test.tfrecord-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        data.make("vit", VIT_SMALL, seed=0, source=str(version))


# ----------------------------------------------------------------- make()


def test_make_rejects_bad_arguments():
    with pytest.raises(InputError, match="family"):
        data.make("gpt", T5_SMALL, seed=0)
    with pytest.raises(InputError, match="split"):
        data.make("t5", T5_SMALL, seed=0, split="test")
    with pytest.raises(InputError, match="source"):
        data.make("t5", T5_SMALL, seed=0, source=3)


def test_make_presets_from_models():
    pytest.importorskip("bigsparse_lib.models")
    with pytest.raises(InputError, match="source"):
        data.make("vit", "full", seed=0)
    for family in data.FAMILIES:
        ds = data.make(family, "smoke", seed=0)
        b = ds.batch(0, 2)
        assert all(v.shape[0] == 2 for v in b.values())
        assert ds.irreducible_loss > 0
