"""The training loop: one run of the sweep (§3.1, App. A), with exact resume.

A run trains a model of family "t5" or "vit" whose sparsified layers end with N
non-zeros at sparsity S, pruned during training by gradual magnitude pruning (GMP,
cubic, 25% -> 75% of training) or another method of `pruning.py`. It logs the loss,
the sparsity and the training FLOPs spent so far (dense and sparse costs of §3.3, see
`flops.py`), evaluates on the held-out stream, and writes `result.json`.

Reproducibility: the data stream is a pure function of the batch index, and the
randomness of step t is `fold_in(fold_in(key(seed), 1), t)` (the init key is
`fold_in(key(seed), 0)`), so a run killed and resumed from its orbax checkpoint computes
exactly what a run never stopped computes (tested on CPU, bit for bit).

Data parallelism: the batch is sharded along the "data" axis of a mesh over the local
devices and the parameters are replicated (`jax.sharding`); XLA inserts the all-reduce.

    from bigsparse_lib import train
    result = train.train(train.TrainConfig(family="t5", preset="smoke", sparsity=0.5), "runs/t5")
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bigsparse_lib import optim
from bigsparse_lib.compilecache import COMPILE_CACHE_ENV, enable_compilation_cache  # noqa: F401 (train.X)
from bigsparse_lib.errors import InputError
from bigsparse_lib.flops import Spent
from bigsparse_lib.schedule import GradualSchedule
from bigsparse_lib.vocab import FAMILIES, METHODS, PRESETS, parse_pattern

# Per family: bump whenever a change alters the numbers that family's runs produce (the sweep
# store keys runs on it, so old results are never reused). ViT 2: toy images became motifs in
# patch-sized cells (`data.toy.MotifImages`), toy learning rate 1e-2. T5 2 / ViT 3: the engine of
# `train_runs` (batches generated on the device from jax.random draws, schedules as traced data,
# masks on every sparsifiable kernel), the ViT head bias started at the task's prior logit.
# T5 3 / ViT 4: every run is evaluated on one fixed held-out set (EVAL_SEED), 64 toy batches.
# Tried and reverted (2026-11-30): a ViT recipe 5 with toy peak learning rate 1e-2 instead of
# 3e-3. Single runs at 6K and 24K ended 0.3-0.6 nats lower, but the full toy sweep did not: the
# runs on the widest dense width (96K: 48K at S = 0.5, 24K at 0.75, 12K at 0.875) trained worse
# than their narrower neighbours (3.32, 3.26, 3.35 at 1000 steps against 2.82, 2.87, 2.91), so the
# loss fell with N along only 20 of 27 adjacent pairs (27 at 3e-3), the seed spread rose to 0.86 of
# the gap between sizes (0.47), and the chapter's claims held 4 of 11 (5 at 3e-3). One peak rate
# for every width is the paper's recipe; at toy widths 1e-2 is too high for the widest.
# Tried and reverted (2026-12-01): a T5 recipe 4 with toy peak learning rate 2e-2 instead of the
# paper's 1e-2, to cut the seed spread. Four seeds of the dense 14K model at 800 steps spread 0.010
# instead of 0.036 and ended 0.09 lower, but the full toy sweep (`bigsparse sweep`, /tmp results)
# did not gain: the adjacent-size gaps shrank with the spreads (seed spread / size gap 0.305
# against 0.30), the fit's c fell 92% below the irreducible loss (the floor claim held at 1e-2),
# and seed 1 alone failed: 8 of 11 claims held, against 10.
# Measured, nothing changed (2026-12-01): where the toy T5 seed spread comes from. Dense 14K, four
# seeds, 400 and 800 steps (ad-hoc probe, /tmp results): with each seed's own data stream, std 0.027
# and 0.016; with every seed on seed 0's stream (only the init and step keys differ), 0.021 and 0.017.
# The spread is the init's, not the data's: seed 0 was the worst of the four at both lengths either way.
# An init that starts every run as the same function (the attention "out" and MLP "wo" kernels at
# zero) cut the 14K spread at 800 steps to std 0.003, but only because the runs stalled: loss 2.944
# against 2.597, and two seeds at 28K ended 0.12 apart (2.798, 2.919). Not a recipe.
# Probed, nothing changed (2026-12-01): the toy ViT task's knobs (`data.toy.ImageSpec`), dense runs of
# seed 0 at 6K-96K and 250/500/1000 steps, each with the head bias at its task's prior logit (ad-hoc,
# /tmp results). 64 labelled and 64 distractor motifs instead of 256 + 256: the two widest ended at
# 1.29 and 1.23 after 1000 steps (irreducible 0.90, against 3.55 at 48K now), but from 12K to 24K the
# loss fell by 1.40 while 6K to 12K gained 0.10, a capacity threshold rather than a power law: a
# dense fit of eq. 3's form to the 15 runs (ad-hoc least squares on log L) missed them by 10% on
# average, and its c went to 0. Motif Zipf exponent 1.5 instead of 1.1: 96K ended above 48K at 500 and
# 1000 steps (3.11 against 2.91, 2.44 against 2.10); the same fit missed by 4.8%. The head's
# weight decay at 1x the body's instead of big_vision's 100x: 0.12-0.31 lower at 6K and 48K, the
# same shape. None is a recipe; one seed per point, and the ViT's seeds spread ~0.2 (Noise.by_size).
# Not bumped (as for the CPU compile level, `CPU_COMPILER_OPTIONS`): the ViT patch embedding as a
# matrix product instead of a strided conv (`models.vit.PatchEmbedding`, 2026-12-01), the same
# function up to float32 rounding; nor for the n of n:m patterns and AC/DC's flag as program data
# (2026-12-01, `group_signature`): a run alone computes what it did, a grouped one the same up to
# float32 rounding (`bench/shared_programs.py`).
# T5 4 (2026-12-02): the toy T5 has one layer per stack, not two (`models.t5.BASES["toy"]`), so a
# toy size is sqrt(2) times as wide. Probe (dense, 4 seeds, 14K and 28K, 200 and 800 steps,
# `BASES["toy"]` replaced in the probe's process): seed std 0.032/0.014 at 14K and 0.014/0.004 at
# 28K, against 0.038/0.016 and 0.031/0.009 at two layers; the 14K-to-28K gap 0.157/0.078 against
# 0.113/0.056; mean losses 3.064/2.596 and 2.907/2.518 against 3.053/2.597 and 2.940/2.541; 237 s
# against 393 s of wall time for the 16 runs. The same probe of the toy ViT at depth 1 (6K and 12K,
# 250 and 1000 steps) left its seed std at 0.14-0.21, so the ViT kept depth 2 (until ViT 7).
# Probed, nothing changed (2026-12-02): the one-layer toy T5 at batch 64 for 100/400 steps (the same
# tokens as batch 32 for 200/800). Dense, 4 seeds, 14K and 28K: seed std 0.025/0.018 at 14K and
# 0.020/0.015 at 28K against 0.032/0.014 and 0.014/0.004 at batch 32; 227 s against 195 s for the 16
# runs: half the steps on twice the rows took longer, so per-step costs (dispatch, the optimizer) do not
# bound the toy sweep.
# Probed, nothing changed (2026-12-02): where the toy ViT's seed spread comes from. Dense, seeds 0-3,
# 6K and 12K, 250 and 1000 steps, one change at a time (ad-hoc, /tmp results; the head bias at the
# task's prior logit to 2 places, -1.63). Seed std at 6K and 12K after 1000 steps: as is 0.16, 0.23;
# every seed from seed 0's initialisation 0.15, 0.15; batch 256 for 500 steps (the same images) 0.18,
# 0.16; peak lr 1e-3 0.16, 0.14; an orthogonal patch embedding 0.17, 0.41; motifs drawn Zipf-Mandelbrot
# ((i + 16)^-1.1: the top motif 2.4% of the labelled mass instead of 21%) 0.16, 0.31; Adafactor's
# epsilon 1e-6 instead of 1e-30 0.28, 0.12; no gradient clipping 0.20, 0.09; fixed 2-D sin-cos
# position embeddings instead of learned ones 0.16, 0.13. A shared init cut the spread at 250 steps
# (0.13, 0.29 -> 0.061, 0.035), not at 1000. And seeds 0 and 1 at 6K, 1000 steps, trained in the
# probe's group with the head bias at -1.63, ended 0.09 and 0.18 away from the same runs in the main
# sweep (bias -1.6, another group: float32 rounding). So the long runs' spread is not
# the init's, nor the gradient noise's: this training amplifies any small difference. The head's weight
# decay at the body's rate instead of 100x (4 seeds: std 0.17, 0.08; losses 0.2-0.4 lower) went on to a
# whole toy sweep (a recipe 5, /tmp results, 17.2 min): 6 of 11 claims as now, the fit's error 4.27%
# (3.20% now), the largest size predicted to 9.09% (6.07%), seed spread / size gap 0.458 (0.483).
# ViT 6 (2026-12-02; not 5, which the reverted recipe of 2026-11-30 above used): the toy ViT task
# has 256 classes, one per labelled motif, not 16; label noise 1e-3 (irreducible loss 2.02 instead
# of 0.90); each class's head bias starts at its prior logit (`models.vit.prior_head_bias`). Why:
# per-class eval losses of two seeds of the toy sweep's runs (recipe 4, dense 6K and 12K, 250 and
# 1000 steps; ad-hoc, from the stored checkpoints) differed in one to three of the 16 classes, by up
# to 0.24 nats each, the rest alike: a class was learned (0.10-0.17) or not (0.35-0.51), and which
# ones made the seed spread. Probe (dense, seeds 0-3, 6K and 12K, 250 and 1000 steps): seed std /
# 6K-to-12K gap 0.19 and 0.16, against 0.43 and 0.30 at 16 classes; the same wall time. And the toy
# head's learning rate is 10x the body's (`optim.HEAD_LR_MULT`, which says why): with the classes
# alone, the whole toy sweep's loss fell faster than a power law in N (gaps between adjacent sizes
# growing with N), the fit missed by 2.2% and its c went to 0, and 5 of 11 claims held.
# ViT 7 (2026-12-02): the toy ViT has one block, not two (`models.vit.BASES["toy"]`), so a toy size
# is sqrt(2) times as wide, as the T5 went to one layer per stack in T5 4. (Depth 1 was probed under
# recipe 4 above and left the seed spread as it was; that spread has since gone with the 256
# classes.) The whole toy sweep (`bigsparse sweep --family vit --preset toy`, the same grid, /tmp
# results; scored with `evidence.report`), recipe 6 -> 7: the same FLOPs (N counts the blocks'
# weights, 12 w^2 each, at any depth; XLA's count of the grid: 23.8 against 23.2 TFLOP), 16% of the
# matmul peak against 14% (BENCHMARKS.md, Sweeps; two Xeons, so most of 454 s against 801 s is
# the faster machine); claims held 6 -> 7 of 11; the fit's mean error 2.76% -> 1.54%; the
# largest size predicted to 5.38% -> 1.46% (now within 2%); seed spread / size gap 0.157 -> 0.161;
# c still at 0, and the drops per halving of density still not diminishing (0.73, 0.70, 0.81).
# Probed, nothing changed (2026-12-02): ViT 7 with 64 classes instead of 256 (each class four
# motifs; irreducible loss 0.51), the whole toy sweep (/tmp results): 6 of 11 claims, fit 3.67%,
# largest size 7.07%, seed spread / size gap 0.246. Its loss too was set by the dense width, not
# by S at that width (`evidence.equal_width`: ratio 0.16, against 0.15 at 256 classes).
# Probed, nothing changed (2026-12-02): ViT 7 with 64 labelled motifs, 64 distractors and 64 classes
# (irreducible loss 0.51), the whole toy sweep (/tmp results): the size gaps now shrink (0.85, 0.78,
# 0.57) and the drops per halving of density diminish (0.53, 0.44, 0.32), the seed spread / size gap
# is 0.179, but the fit misses by 5.22% and the largest size by 7.95%, c is still 0 and seed 1 fails:
# 7 of 11 claims. Its loss still falls by about a nat with every doubling of D (6K: 5.51, 4.53,
# 3.59; 48K: 2.95, 2.04, 1.38), far from converged, and the drop depends on N, which eq. 3's D term
# does not allow.
# Probed, nothing changed (2026-12-02, later): two more knobs for the seed spread, dense runs of
# seeds 0-3 at the two smallest toy sizes, shortest and longest length (ad-hoc, /tmp results).
# Mean |difference| between two seeds / the gap to the next size, at the shortest and longest D:
#   T5 as is (14K; 28K):                          0.225, 0.232; 0.101, 0.065
#   T5 batch 16 for 2x the steps (same tokens):   0.244, 0.150; 0.182, 0.198 (losses 0.07-0.20
#                                                  lower; 6% more wall time for twice the steps)
#   T5 linear warm-up over the tenth held at peak: 0.221, 0.273; 0.114, 0.062
#   ViT as is (6K; 12K):                          0.180, 0.115; 0.071, 0.116
#   ViT batch 32 for 4x the steps (same images):  0.082, 0.209; 0.075, 0.367 (losses 0.02-0.4
#                                                  lower; 23% more wall time)
# None lowers the ratio at both sizes. The sweeps chapter now gives the ratio's bootstrap interval
# over its points (`evidence.Noise.interval`): T5 0.242 [0.175, 0.307], ViT 0.161 [0.114, 0.209].
# Probed, nothing changed (2026-12-02, session 21), the toy ViT (ad-hoc, /tmp results):
# - Peak lr 1e-2 instead of 3e-3, dense seed 0, the grid's four sizes at its three lengths: every
#   loss 0.5-1.0 lower (6K: 9.56, 8.71, 7.67 against 10.33, 9.46, 8.72; 48K: 7.63, 6.41, 5.36 against
#   8.08, 7.02, 6.28). At 3e-2 the small sizes fell further but 48K rose (5.85 at the longest, no
#   better than 24K). The whole toy sweep at 1e-2 (`bigsparse sweep --family vit --preset toy`, 9.3
#   min): 7 of 11 claims as now, but the fit's error rose to 2.15% (1.54% now), the largest size was
#   predicted to 1.89% (1.46%), the seed spread / size gap rose to 0.200 (0.161), c still 0, and the
#   drops per halving of density still not diminishing (0.61, 0.52, 0.72).
# - Why the drops zigzag: the loss against the dense width is a staircase, not a power law. Dense,
#   500 steps, lr 1e-2, seeds 0 and 1 (mean), widths 24-64: 8.44, 8.10, 7.63, 7.61 (36), 7.43, 7.24
#   (44), 7.01, 6.55 (56), 6.37; flat from 32 to 44, steep on either side. The grid's widths are 22,
#   32, 44, 64 and 90, so each halving of density that crosses 32 -> 44 gains ~0.35 and each that
#   crosses 22 -> 32 or 44 -> 64 ~1.0, whichever S it is.
# - A task whose never-pruned parts are small: 4x4-pixel patches of 16x16 images (embedding 48 w
#   instead of 192 w), 32 classes (head 32 w instead of 256 w), 512 labelled motifs, 256 distractors,
#   label noise 0.01 (irreducible loss 1.79). At 6K, 12K and 48K non-zeros the never-pruned weights
#   (embeddings, head, norms, biases) are 10.8K, 15.6K and 31.0K under recipe 7's shapes (more than N
#   at 6K), and 2.5K, 3.6K and 7.2K here (yet the paper's smallest ViT carries 3.4 N of them dense and
#   9.1 N at S = 0.875 with a 30K-class head: `evidence.uncounted_weights`, core_law_sweep). Dense, seed 0, lr 3e-3,
#   the longest runs: 6.69, 6.50, 6.10, 5.62 (gaps 0.19, 0.40, 0.48: growing with N, which no power
#   law fits). At one width the loss now rises with S, as eq. 3 has it (width 49K: dense 5.62, S =
#   0.75 5.71, S = 0.875 5.78; recipe 7: mixed signs), but the width still sets most of it. Not swept
#   whole: the growing size gaps already break the fit.
# - Four heads instead of two (widths in steps of 4). Dense, 500 steps, lr 3e-3, seeds 0 and 1 (mean),
#   widths 24-64: 8.89, 8.67, 8.39, 8.03, 7.78, 7.42, 7.24, 7.00, 6.63, against 9.20, 9.06, 8.66, 8.34,
#   8.29, 8.00, 7.58, 7.50, 6.94 with two heads (the staircase above is partly seed noise: the two
#   seeds differ by up to 0.46 at one width). The whole toy sweep with four heads (8.3 min): 6 of 11
#   claims; fit 2.26%, largest size 3.05%, seed spread / size gap 0.224, c still 0, and the drops per
#   halving of density now rising (0.73, 0.83, 0.83): the sparse, wider models gained the most.
# Probed, nothing changed (2026-12-03), the toy ViT (ad-hoc, /tmp results; whole sweeps scored with
# `evidence.report`). Quick probes: dense and S = 0.75 at 6K-48K (no 48K at 0.75), seed 0, one length.
# - Peak lr 1e-2 x 32 / width (3.6e-3 at the widest to 1.5e-2 at the narrowest), the whole toy sweep
#   (6.8 min): 6 of 11 claims (7 now); fit 1.60%, the largest size predicted to 0.75% (1.46% now), c
#   still 0, drops per halving of density 0.475, 0.471, 0.535, seed spread / size gap 0.242 (0.161 now).
# - Recipe 7 for 4000 steps instead of 1000. Dense 7.42, 6.28, 6.12, 4.73 (1000 steps: 8.72, 7.69,
#   7.30, 6.28); S = 0.75 6.19, 4.80, 4.30 (7.47, 6.51, 5.69). At one width (23K: dense 6.12, S = 0.75
#   6.19; 49K: 4.73, 4.80) S mattered even less than at 1000 steps, and the staircase stayed (gaps
#   1.14, 0.16, 1.39): longer runs do not make the non-zeros set the loss.
# - 4x4-pixel patches of 16x16 images, else recipe 7 (1000 steps): dense 9.60, 8.75, 8.09, 7.28 (gaps
#   0.84, 0.66, 0.81, more even), S = 0.75 8.23, 7.56, 6.75; equal-width spread / gap about 0.27.
# - Compositional motifs, so that the block, not the patch embedding, has to do the work: each cell's
#   left half shows one of Q primitives and its right half another (Zipf 1.0, independent), and the
#   class of a cell is a fixed random balanced assignment of the Q^2 ordered pairs to K classes (a
#   conjunction, which a linear embedding cannot read; irreducible loss still K H_b(eta), exact).
#   Q = 16, K = 32 (irreducible 0.25, label-frequency loss 19.1), 1000 steps: dense 14.7, 13.6, 12.2,
#   10.6 at lr 3e-3; 13.5, 11.5, 8.7, 5.8 at 1e-2; 11.1, 6.9, 3.6, 1.1 at 3e-2 (S = 0.75: 5.9, 1.9,
#   0.8). Now the loss rises with S at one width (23K: dense 3.58, S = 0.75 5.88). Batch 32 for 4000
#   steps at 1e-2 (the same images): 11.9, 9.5, 6.0, 2.5, slower for its wall time. The whole toy sweep
#   at 3e-2 (8.1 min): monotone 27/27 and 26/26, seed spread / size gap 0.115, gain(0.5) 1.51 [1.38,
#   1.82], but the fit missed by 33%, c went to 0, the largest size by 110%, drops per halving 1.94,
#   1.97, 1.64, seed 1 failed: 6 of 11. Far from converged: from 250 to 1000 steps the dense loss fell
#   by 3.9 at 6K and 9.0 at 48K, and eq. 3's D term falls by the same at every N.
#   Q = 8, K = 16 (irreducible 0.13, label-frequency loss 9.6), lr 3e-2, the whole toy sweep (8 min): 7
#   of 11, with the drops per halving diminishing (0.366, 0.312, 0.253; as with 64 motifs above) and
#   seed spread / size gap 0.197, but the fit missed by 10.2% (at worst 57%), c at 0, the
#   largest size by 16.4%, seed 1 failed. Dense 6K: 5.49, 4.18, 2.12 at 250, 500, 1000 steps; 48K:
#   2.74, 1.24, 0.59. A neighbour-pair variant (the class of two horizontally adjacent cells; Q = 32,
#   K = 64, lr 3e-3) barely left the label-frequency loss in 1000 steps (26.9 -> 23.6-24.6).
#   Q = 8 at twice the lengths (500, 1000, 2000 steps; 16 min for the whole sweep): 7 of 11 again,
#   the seed spread / size gap 0.136, but the fit missed by 18.5%, c at 0, the largest size by 26.5%.
#   Dense 2000-step losses 1.21, 0.69, 0.52, 0.39 near a floor of 0.13: with 64 pairs to learn the
#   loss closes on the floor faster than a power law, so longer runs make the fit worse, not better.
#   None of the three pair sweeps beats recipe 7's 7 of 11 with its fit at 1.54%: the pair task trades
#   the fit for the noise and diminishing-returns claims. At Q = 16 its runs are far from converged;
#   at Q = 8 the loss closes on its floor faster than a power law.
# Probed, nothing changed (2026-12-03): the toy T5 with orthogonal kernels (attention and MLP; scaled
# so that d -> d_ff keeps fan-in variance) instead of T5's fan-in normals, for the seed spread. Dense,
# seeds 0-3, 14K and 28K, 200 and 800 steps (ad-hoc, /tmp results): seed std 0.012/0.014 at 14K and
# 0.042/0.011 at 28K (one seed 0.07 above the others at 200 steps), against 0.032/0.014 and
# 0.014/0.004 as is (T5 4 above); the 14K-to-28K gap 0.124/0.064. No better.
# Probed, nothing changed (2026-12-03, session 25): where the toy T5 seed spread sits, on the whole toy
# sweep (`bigsparse sweep --family t5 --preset toy`, /tmp results, 9.8 min; 10 of 11 claims, seed spread
# / size gap 0.242, as the book) plus seed 1 at the two largest sizes, S = 0 and 0.5, every length (12
# more runs). (1) The second seed at every size on S = 0 and 0.5 (24 runs, the compute of today's seed 1
# at the two smallest sizes and every S) instead: ratio 0.283 [0.218, 0.347] against 0.242, the other
# claims still held (fit 0.68%, largest size 1.30%, seed 1 alone). Per size, mean spread / mean gap:
# 14K 0.024 / 0.090, 28K 0.014 / 0.077, 56K 0.022 / 0.059, 112K 0.019 / 0.052. The seeds differ by about
# 0.02 nats at every size while the gaps shrink with N, so the noise is not at the smallest sizes, and
# moving the seeds to larger ones makes the ratio worse. (2) The same 36 seed pairs re-evaluated from their
# checkpoints on 512 held-out batches instead of 64: mean |difference| 0.0171 against 0.0180. The
# spread is the trained weights', not the eval set's. (3) The language's knobs (`data.toy.LanguageSpec`),
# dense, seeds 0-3, 28K and 56K, 200 and 800 steps (`PYTHONPATH=<probe copy>`, ad-hoc, /tmp results);
# mean |difference| between two seeds / the 28K-to-56K gap, averaged over the two lengths: as is 0.197
# (0.191, 0.204); 16384 phrases of 2-3 tokens 0.355 (smaller pieces of knowledge, more of them per
# model, did not average the noise away); phrase Zipf exponent 1.0 0.199 (0.248, 0.149); 1.5 1.25 (at
# 800 steps the two sizes were 0.008 apart, near the floor). None is better than as is. (4) The same
# quick probe of the schedule: peak lr 5e-3 instead of 1e-2, 0.190 (every loss 0.06-0.3 higher); a
# linear cool-down to 0 over the last fifth of each run (as the ViT recipe has; a T5 4 probe on the
# two-layer T5 had tried it at 200 steps only), 0.162 (gaps 0.107 and 0.050 against 0.099 and 0.046).
# The cool-down went on to the whole toy sweep (9.6 min): seed spread / size gap 0.234 [0.164, 0.302]
# against 0.242, the ten other claims still held (fit 0.59%, largest size 1.03%); by length 0.27,
# 0.21, 0.20 against 0.29, 0.19, 0.22. Within the noise of the measurement; not kept, as it would
# leave the paper's T5 schedule for no measured gain. The four-seed quick probe is too coarse to
# rank variants whose ratios differ by less than about 0.05.
# Probed, nothing changed (2026-12-03, session 27): the toy T5's untied readout (`logits_dense`)
# initialised at zero, as muP and others do so that every seed starts from the same function, for the
# seed spread. The quick probe of session 25 (dense, seeds 0-3, 28K and 56K, 200 and 800 steps; the
# same script re-run as is gave its 0.197 again): mean |difference| / gap 0.452 (0.010 at 200 steps,
# where no run had left the start: losses 6.10 and 6.05 against 2.91 and 2.81 as is; 0.895 at 800
# steps: 3.51 and 3.42 against 2.52 and 2.47). Adafactor scales each update by the parameter's RMS
# (at least 1e-3), so a kernel that starts at zero barely moves; zero-initialising the residual
# branches' last kernels as well (attention `out`, MLP `wo`) would hit the same wall, and was not run.
RECIPE_VERSIONS = {"t5": "4", "vit": "7"}
# Every run is evaluated on the same held-out set, the eval split of this seed's stream, as a
# paper evaluates every run on one validation set. With each run's own eval set, two seeds of
# one toy model differed by up to 0.09 in eval loss on the same weights (16 batches), more than
# the gap between adjacent sizes: the "seed spread" measured the eval sets, not training.
# Train and eval batches stay disjoint for every run seed (the split is part of each draw's key).
EVAL_SEED = 0


def recipe_version(family: str) -> str:
    """The recipe version of `family`'s runs (RECIPE_VERSIONS)."""
    return RECIPE_VERSIONS[family]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; `result.json` says so with the reason."""


# Signal names that a sweep's main thread received while groups train in worker threads
# (`sweep.executors`, concurrent groups): every `train_runs` in flight checkpoints its runs at its
# next block and raises `Interrupted`, as it does for a signal of its own in the main thread.
STOP_REQUESTS: list[str] = []


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped training: every run in flight was checkpointed at its last
    finished block, so running the same command again resumes it."""


# --------------------------------------------------------------------------------------
# Recipes (App. A): the per-family, per-preset defaults of a run.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """Defaults of one family at one scale.

    The optimizer and its learning-rate schedule are the paper's (`optim.for_family`: T5's
    sparsity-aware Adafactor with rsqrt decay, peak 1e-2; big_vision's Adafactor for ViT,
    peak 8e-4). `full` uses the paper's batch sizes: 128 sequences of 512 tokens for T5
    (App. A), 4096 images for ViT (440K steps x 4096 = the ~1.8B images of Table 1).
    `smoke` and `toy` keep the structure at CPU size; `learning_rate` None = the paper's peak.
    """

    batch_size: int
    steps: int
    learning_rate: float | None
    eval_batches: int
    log_every: int
    checkpoint_every: int


PAPER_PEAK_LR = optim.PAPER_PEAK_LR  # optim.for_family's defaults, the paper's (App. A)

RECIPES: dict[str, dict[str, Recipe]] = {
    "t5": {
        "smoke": Recipe(batch_size=8, steps=40, learning_rate=None, eval_batches=2, log_every=5,
                        checkpoint_every=20),
        "toy": Recipe(batch_size=32, steps=800, learning_rate=None, eval_batches=64, log_every=20,
                      checkpoint_every=200),
        "full": Recipe(batch_size=128, steps=250_000, learning_rate=None, eval_batches=100, log_every=500,
                       checkpoint_every=5_000),
    },
    "vit": {
        "smoke": Recipe(batch_size=8, steps=40, learning_rate=3e-3, eval_batches=2, log_every=5,
                        checkpoint_every=20),
        "toy": Recipe(batch_size=128, steps=1000, learning_rate=3e-3, eval_batches=64, log_every=25,
                      checkpoint_every=250),
        "full": Recipe(batch_size=4096, steps=55_000, learning_rate=None, eval_batches=20, log_every=500,
                       checkpoint_every=5_000),
    },
}


def mask_update_every(steps: int) -> int:
    """Steps between mask updates: the paper's 100 (App. A) for its 55K-1M step runs,
    and proportionally fewer (at least 1) for short runs, so that a run of any length
    gets ~200 updates or more over its schedule (Table 5: the frequency matters little)."""
    return int(min(100, max(1, steps // 200)))


def default_schedule(steps: int, pretrained: bool) -> GradualSchedule:
    """The paper's cubic 25% -> 75% schedule (App. A); from a pretrained checkpoint (§4.2) it
    starts at once (`pruning.pretrained_schedule`)."""
    from bigsparse_lib import pruning

    schedule = GradualSchedule(start=0.25, end=0.75, power=3.0, every=mask_update_every(steps))
    return pruning.pretrained_schedule(schedule) if pretrained else schedule


# --------------------------------------------------------------------------------------
# The run's configuration.
# --------------------------------------------------------------------------------------
OMITTED_WHEN_NONE = ("acdc_phase",)  # fields newer than stored runs: absent from their config dicts


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's numbers. None means "the preset's default" (RECIPES).

    nnz: N, the non-zeros of the sparsified layers at the end (None: the preset's base model
    at sparsity S). init: a previous run's output directory holding a dense checkpoint to
    prune from (§4.2). data_source: None (the preset's synthetic stream), "synthetic", or a
    folder of real data (C4 shards / images; `data.make`), needed at the full preset.
    """

    family: str
    preset: str = "smoke"
    nnz: int | None = None
    sparsity: float = 0.0
    pattern: str = "unstructured"
    method: str = "gmp"
    steps: int | None = None
    seed: int = 0
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: GradualSchedule | None = None
    init: str | None = None
    data_source: str | None = None
    dtype: str = "float32"
    eval_batches: int | None = None
    log_every: int | None = None
    checkpoint_every: int | None = None
    # AC/DC's phase length in steps (App. B); None = `pruning.ACDC_PHASE_FRACTION` of the run.
    # Added after runs were stored: `to_dict` leaves it out while it is None, so their ids stay.
    acdc_phase: int | None = None

    def validate(self) -> "TrainConfig":
        """Raise InputError, naming the argument, for a config no run can have; return self."""
        if self.family not in FAMILIES:
            raise InputError(f"{{arg}} must be one of {', '.join(FAMILIES)}, got {self.family!r}", arg="family")
        if self.preset not in PRESETS:
            raise InputError(f"{{arg}} must be one of {', '.join(PRESETS)}, got {self.preset!r}", arg="preset")
        S = self.sparsity
        if not (isinstance(S, (int, float)) and math.isfinite(S) and 0.0 <= S < 1.0):
            raise InputError(f"{{arg}} must be in [0, 1), got {S}", arg="sparsity")
        try:
            nm = parse_pattern(self.pattern)
        except InputError as e:
            raise InputError(e.message, arg="pattern") from None
        if nm is not None and S > 1.0 - nm[0] / nm[1] + 1e-12:
            raise InputError(f"{{arg}} {S} is above 1 - n/m = {1 - nm[0] / nm[1]:g}, "
                             f"the most an {self.pattern} pattern allows", arg="sparsity")
        if self.method not in METHODS:
            raise InputError(f"{{arg}} must be one of {', '.join(METHODS)}, got {self.method!r}", arg="method")
        if self.method == "none" and S > 0:
            raise InputError(f"{{arg}} none trains dense; it cannot reach sparsity {S}", arg="method")
        if self.dtype not in DTYPES:
            raise InputError(f"{{arg}} must be one of {', '.join(DTYPES)}, got {self.dtype!r}", arg="dtype")
        for name in ("nnz", "steps", "batch_size", "eval_batches", "log_every",
                     "checkpoint_every", "acdc_phase"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise InputError(f"{{arg}} must be a positive integer, got {value!r}", arg=name)
        if self.acdc_phase is not None and self.method != "acdc":
            raise InputError(f"{{arg}} is the phase of method acdc, not of {self.method!r}", arg="acdc_phase")
        if self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InputError(f"{{arg}} must be positive, got {self.learning_rate}", arg="learning_rate")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"{{arg}} must be a non-negative integer, got {self.seed!r}", arg="seed")
        if self.init is not None and not Path(self.init).is_dir():
            raise InputError(f"no such directory: {self.init}", arg="init")
        return self

    def resolved(self) -> "TrainConfig":
        """The same config with every default filled in from RECIPES (what the run records)."""
        self.validate()
        recipe = RECIPES[self.family][self.preset]
        steps = int(self.steps or recipe.steps)
        pick = lambda name: getattr(self, name) if getattr(self, name) is not None else getattr(recipe, name)
        return dataclasses.replace(
            self,
            nnz=None if self.nnz is None else int(self.nnz),
            sparsity=float(self.sparsity),
            steps=steps,
            batch_size=int(pick("batch_size")),
            learning_rate=float(pick("learning_rate") or PAPER_PEAK_LR[self.family]),
            schedule=self.schedule or default_schedule(steps, pretrained=self.init is not None),
            init=None if self.init is None else str(Path(self.init).resolve()),
            data_source=(self.data_source if self.data_source in (None, "synthetic")
                         else str(Path(self.data_source).resolve())),
            eval_batches=int(pick("eval_batches")),
            log_every=int(min(pick("log_every"), steps)),
            checkpoint_every=int(pick("checkpoint_every")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, keys in field order."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if not (f.name in OMITTED_WHEN_NONE and getattr(self, f.name) is None)}
        if self.schedule is not None:
            d["schedule"] = dataclasses.asdict(self.schedule)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"unknown training config key(s): {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("schedule"), dict):
            d["schedule"] = GradualSchedule(**d["schedule"])
        return cls(**d)


# --------------------------------------------------------------------------------------
# What the loop needs from the model family, the data and the pruning method.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A model family's functions bound to one model config, and its two data streams.

    loss_fn(params, batch, *, rng, dtype) -> scalar; sparsifiable(params) -> pytree of
    bool; targets: per-parameter target sparsity (pytree like params); the datasets have
    `batch(index, batch_size)`, a pure function of the index. `optimizer(config, task)`, if
    given, replaces the family's recipe (`make_optimizer`): a task of one's own (not a model
    family of the paper, e.g. a small stand-in model) brings its own optimizer and trains as a
    single run, without the pruning wrapper's per-run inputs; the tests drive the loop so.
    """

    model_config: Any
    init: Callable[[jax.Array], Any]
    loss_fn: Callable[..., jax.Array]
    sparsifiable: Callable[[Any], Any]
    targets: Any
    train_data: Any
    eval_data: Any
    units_per_example: int
    optimizer: Callable[["TrainConfig", "Task"], optax.GradientTransformation] | None = None


def model_config(config: TrainConfig):
    """The model shapes of a run: the preset's base, or the width that holds N/(1-S) weights
    (with inner dimensions that split into the groups of its n:m pattern, if it has one)."""
    from bigsparse_lib import models

    family = models.get_family(config.family)
    if config.nnz is None:
        return family.BASES[config.preset]
    nm = parse_pattern(config.pattern)
    return models.config_for_nnz(config.family, config.preset, int(config.nnz), float(config.sparsity),
                                 group=1 if nm is None else nm[1])


def make_task(config: TrainConfig) -> Task:
    """Bind the family of `config` (models/, data/) to its model config."""
    from bigsparse_lib import data, models

    family = models.get_family(config.family)
    mcfg = model_config(config)
    # The streams' shapes (vocabulary, lengths, classes, image size) do not depend on the width,
    # so the preset names the stream even when `nnz` rescales the model.
    train_data = data.make(config.family, config.preset, seed=config.seed, split="train", source=config.data_source)
    eval_data = data.make(config.family, config.preset, seed=EVAL_SEED, split="eval", source=config.data_source)

    def loss_fn(params, batch, *, rng=None, dtype=jnp.float32):
        return family.loss_fn(params, batch, mcfg, rng=rng, dtype=dtype)

    return Task(
        model_config=mcfg,
        init=lambda key: family.init(mcfg, key),
        loss_fn=loss_fn,
        sparsifiable=family.sparsifiable,
        targets=family.target_sparsities(mcfg, float(config.sparsity)),
        train_data=train_data,
        eval_data=eval_data,
        units_per_example=int(train_data.units_per_example),
    )


def make_optimizer(config: TrainConfig, task: Task) -> optax.GradientTransformation:
    """The family's optimizer (App. A, A.1: `optim.for_family`) wrapped by the pruning method
    (`pruning.sparsify`), which keeps the masks and zeroes the pruned weights after every step."""
    from bigsparse_lib import optim, pruning

    inner = optim.for_family(config.family, int(config.steps), config.preset, learning_rate=config.learning_rate)
    return pruning.sparsify(inner, task.targets, int(config.steps), pruning_config(config))


def pruning_config(config: TrainConfig, method: str | None = None):
    """The `pruning.PruningConfig` of a (resolved) run: its method (or `method`), pattern, schedule
    and AC/DC phase."""
    from bigsparse_lib import pruning

    return pruning.PruningConfig(method=method or config.method, pattern=config.pattern, schedule=config.schedule,
                                 acdc_phase_steps=config.acdc_phase)


# --------------------------------------------------------------------------------------
# Small helpers: parameter paths, counting, sharding.
# --------------------------------------------------------------------------------------
def path_str(keypath) -> str:
    """('encoder', 'layers_0', 'mlp', 'wo', 'kernel') -> 'encoder/layers_0/mlp/wo/kernel' (as pruning.py)."""
    from bigsparse_lib import pruning

    return pruning.path_str(keypath)


def sparsified_kernels(params, sparsifiable) -> dict[str, Any]:
    """{path: array} of the sparsified layers, in the model's own layout."""
    flags = dict(jax.tree_util.tree_leaves_with_path(sparsifiable))
    return {path_str(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params) if flags.get(p, False)}


def _flag_list(params, sparsifiable) -> list[bool]:
    flags = dict(jax.tree_util.tree_leaves_with_path(sparsifiable))
    return [bool(flags.get(p, False)) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def data_mesh(batch_size: int, devices=None) -> Mesh:
    """A 1-D mesh ("data",) over the most local devices that divide the batch evenly."""
    devices = list(devices if devices is not None else jax.devices())
    n = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
    return Mesh(np.array(devices[:n]), ("data",))


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Checkpoints (orbax).
# --------------------------------------------------------------------------------------
CHECKPOINT_DIR = "checkpoints"


def _manager(out_dir: Path, max_to_keep: int = 2):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        (out_dir / CHECKPOINT_DIR).resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers={"params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()},
    )


def _set_aside(out_dir: Path, step: int) -> Path:
    """Move checkpoint `step` of a run out of the way (to checkpoints-set-aside/), never deleting it."""
    where = out_dir / "checkpoints-set-aside" / f"{step}-{int(time.time())}"
    where.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out_dir / CHECKPOINT_DIR / str(step), where)
    return where


# orbax's asynchronous save keeps process-wide state (operation ids, its awaitable-signals
# contract): two managers saving at once from two threads of one process collide, e.g.
# FileExistsError on `<step>.orbax-checkpoint-tmp/params.orbax-checkpoint-tmp`, or a hang.
# Three threads saving 59 steps each failed in 5 tries of 5 without this lock (errors in 4, the fifth
# unfinished after 120 s), and in none of 5 with it; tests/test_train.py has the 3-thread case.
# So saves take turns, and off the main thread (the threaded group runner,
# `sweep.executors._concurrently`) a save also finishes before the lock is released.
_SAVE_LOCK = threading.Lock()


def _save(manager, step: int, params, opt_state, meta: dict) -> None:
    import orbax.checkpoint as ocp

    with _SAVE_LOCK:
        manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta),
        ), force=True)
        if threading.current_thread() is not threading.main_thread():
            manager.wait_until_finished()


def _abstract(tree):
    import orbax.checkpoint as ocp

    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _restore(manager, step: int, params, opt_state):
    """Restore into the structure (and shardings) of the given templates."""
    import orbax.checkpoint as ocp

    r = manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(params)),
        opt_state=ocp.args.StandardRestore(_abstract(opt_state)),
        meta=ocp.args.JsonRestore(),
    ))
    # orbax hands back containers (e.g. tuples for optax's NamedTuples); re-use the templates' structure.
    restored_params = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(r.params))
    restored_opt = jax.tree.unflatten(jax.tree.structure(opt_state), jax.tree.leaves(r.opt_state))
    return restored_params, restored_opt, r.meta


def load_params(run_dir: str | Path, like=None):
    """The parameters of the latest checkpoint of a run directory (a previous `train --out`).

    With `like` (a params pytree or its shapes), shapes must match: InputError otherwise.
    """
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_DIR).is_dir():
        raise InputError(f"{run_dir} holds no checkpoint (expected {run_dir / CHECKPOINT_DIR}/)")
    manager = _manager(run_dir)
    try:
        step = manager.latest_step()
        if step is None:
            raise InputError(f"{run_dir} holds no complete checkpoint")
        # Restore onto this process's first device, whatever topology the run was saved from.
        meta = manager.item_metadata(step)["params"]
        meta = getattr(meta, "tree", meta)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), meta)
        restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))).params
    finally:
        manager.close()
    restored = jax.tree.map(np.asarray, restored)
    if like is not None:
        want = {path_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_leaves_with_path(like)}
        got = {path_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_leaves_with_path(restored)}
        if want != got:
            diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))[:3]
            raise InputError(f"{{arg}} {run_dir}: checkpoint shapes do not match this model "
                             f"(first differences: {', '.join(f'{k}: {got.get(k)} vs {want.get(k)}' for k in diff)})", arg="init")
        restored = jax.tree.unflatten(jax.tree.structure(like), _leaves_by_path(restored, like))
    return restored


def sparsified_params(run_dir: str | Path, family: str) -> dict[str, np.ndarray]:
    """{path: kernel} of the sparsified layers of a run's latest checkpoint, in the model's own
    layout ([in, out]), e.g. "encoder/layers_0/attention/query/kernel" (`train --save-params`)."""
    from bigsparse_lib import models

    params = load_params(run_dir)
    return {k: np.asarray(v) for k, v in sparsified_kernels(params, models.get_family(family).sparsifiable(params)).items()}


def _leaves_by_path(tree, like) -> list:
    """Leaves of `tree` in the order of `like`'s leaves, matched by path string."""
    by_path = {path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}
    return [by_path[path_str(p)] for p, _ in jax.tree_util.tree_leaves_with_path(like)]


# --------------------------------------------------------------------------------------
# The log.
# --------------------------------------------------------------------------------------
LOG_FILE = "log.jsonl"


def read_log(out_dir: str | Path) -> list[dict]:
    """The records of `out_dir/log.jsonl` (a partly written last line is skipped)."""
    path = Path(out_dir) / LOG_FILE
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _truncate_log(out_dir: Path, step: int) -> None:
    """Drop records after `step` (a killed run may have logged past its last checkpoint), and the
    final evaluation's record at `step`, which the resumed run writes again."""
    path = out_dir / LOG_FILE
    if not path.exists():
        return
    keep = [r for r in read_log(out_dir)
            if r.get("step", 0) < step or (r.get("step", 0) == step and "eval_loss" not in r)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def _append_log(out_dir: Path, record: dict) -> None:
    with open(out_dir / LOG_FILE, "a") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")
        f.flush()


# --------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------
def _check_config(out_dir: Path, config: TrainConfig) -> None:
    """Refuse (InputError) to resume a directory that holds a run of another config."""
    path = out_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        theirs = saved.get("config", saved)
        mine = json.loads(json.dumps(config.to_dict()))
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise InputError(f"{{arg}} {out_dir} holds a run of a different config (differs in {', '.join(diff)}); "
                             f"choose another directory", arg="out")
    else:
        _atomic_write_json(path, {"config": config.to_dict(), "recipe_version": recipe_version(config.family)})


def _finished_result(out_dir: Path, config: TrainConfig) -> dict | None:
    """The result of a run of this config that already finished in out_dir, else None."""
    try:
        saved = json.loads((out_dir / "config.json").read_text())["config"]
        result = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    same = saved == json.loads(json.dumps(config.to_dict()))
    return result if same and result.get("status") == "ok" and result.get("steps") == config.steps else None


def _diverged(out_dir: Path, config: TrainConfig, steps: int, reason: str):
    """Record a diverged run in out_dir/result.json and raise `Diverged`."""
    _atomic_write_json(out_dir / "result.json", {"status": "diverged", "reason": reason, "steps": steps,
                                                 "config": config.to_dict(),
                                                 "recipe_version": recipe_version(config.family)})
    raise Diverged(reason)


def _finish(out_dir: Path, config: TrainConfig, sparsifiable, host_params, eval_loss: float, spent: Spent,
            dense: int, *, units_per_example: int, devices: int) -> dict:
    """Write (and return) the result.json of a run that trained all its steps."""
    from bigsparse_lib import pruning

    if not math.isfinite(eval_loss):
        _diverged(out_dir, config, spent.steps, f"eval loss is {eval_loss} after {spent.steps} steps")
    kernels = sparsified_kernels(host_params, sparsifiable)
    nnz = int(sum(np.count_nonzero(v) for v in kernels.values()))
    result = {
        "status": "ok",
        "eval_loss": eval_loss,
        "nnz": nnz,
        "dense_params": dense,
        "sparsity": 1.0 - nnz / dense if dense else 0.0,
        "layer_sparsity": {k: float(v) for k, v in pruning.layer_sparsity(host_params, sparsifiable).items()},
        "data": spent.data,
        "data_unit": "tokens" if units_per_example > 1 else "examples",
        "steps": spent.steps,
        "flops_dense": spent.flops_dense,
        "flops_sparse": spent.flops_sparse,
        "devices": devices,
        "config": config.to_dict(),
        "recipe_version": recipe_version(config.family),
    }
    _append_log(out_dir, {"step": spent.steps, "eval_loss": eval_loss})
    _atomic_write_json(out_dir / "result.json", result)
    return result


# --------------------------------------------------------------------------------------
# The engine: lanes of runs in one compiled program, many steps per dispatch.
# --------------------------------------------------------------------------------------
LANES = "lanes"  # the vmap axis of a group's lanes (pruning.sparsify_leaves' axis_name)
MAX_BLOCK = 100  # steps per dispatch (lax.scan): a killed run redoes at most this many
XS_BYTES = 256 * 2**20  # the most memory one block's batches (all lanes) may take

# XLA's CPU backend compiles at LLVM optimisation level 3 by default. At toy width the compile is
# much of a group's time, and level 1 halves it without slowing the steps: the T5 toy 14K group
# (4 lanes, cache off) compiled in 33 s instead of 64 s, and trained at 23.9 against 25.9 ms per
# lane-step (`bench/compile.py` measures it in BENCHMARKS.md). The matrix products are library
# calls (YNNPACK/Eigen) that the level does not touch; a step differs from level 3's by float32
# rounding, which training amplifies as it does between grouped and single runs (T5: 2e-7
# relative in the eval loss; the toy ViT's short early runs: up to 2%).
# Also tried (2026-11-30, T5 toy 14K, 2 lanes, S = 0.5, quiet machine), as XLA_FLAGS: no flag made the
# step faster. ms per lane-step: default 31.7; YNNPACK fusions off (`--xla_cpu_experimental_ynn_fusion_type=`)
# 34.5; single-threaded Eigen 37.0; both 39.8; XNNPACK on 32.6. And (2026-12-01, an AVX-512 Xeon, dense steps
# of T5 and ViT at two toy widths each, dispatched alone, twice each): 512-bit vectors
# (`--xla_cpu_prefer_vector_width=512`) within run-to-run noise (T5 at 27K: 26.5 and 25.1 ms against 22.5
# and 26.1). The step's matrix products alone bound it at about a third of the matmul peak
# (`bench/step_ceiling.py`); the rest of its time is ~1,000 small operations.
# And (2026-12-02, session 21) for the two families' sweeps side by side (`sweep.run_sweeps`, one process
# each, cold caches; the runs of each toy main grid on its 2nd dense width, 12 + 12): 123 s as is,
# 125 s with single-threaded Eigen in both (`--xla_cpu_multi_thread_eigen=false`), 125 s with that and
# each process pinned to its own core. Alone, the T5 half took 77 s (120 s beside the ViT's) and the ViT
# half 61 s: one toy process already keeps most of both cores busy, so two side by side gain 1.12x over
# one after the other (138 s), and no thread setting adds to it.
# And (2026-12-03, session 27, a 2-core AMD EPYC of matmul peak 160 GFLOP/s) oneDNN, XNNPACK and XNNPACK's
# greedy graph fusion (`--xla_cpu_use_onednn=true`, `--xla_cpu_use_xnnpack=true`,
# `--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY`): one group of 4 toy runs
# (T5 width 56K, dense and S = 0.5, seeds 0-1, 400 steps; the same for ViT at width 24K with XNNPACK)
# gave the same losses as without: bit for bit with XNNPACK (T5 and ViT), to the 5 decimals printed
# with the other two. The flags do not measurably change what the engine compiles; their times
# (35.8-56.7 s, cold and warm caches) moved within run-to-run noise.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def _jit(fun, **kwargs):
    """`jax.jit` with CPU_COMPILER_OPTIONS when the default backend is the CPU (the engine's programs)."""
    if jax.default_backend() == "cpu":
        kwargs.setdefault("compiler_options", CPU_COMPILER_OPTIONS)
    return jax.jit(fun, **kwargs)


def group_signature(config: TrainConfig) -> str | None:
    """Runs with equal signatures can train in one compiled program (`train_runs`); None for a
    run that always trains alone.

    Equal: the resolved config except what a run feeds the program as data -- its seed, sparsity,
    non-zero count, length, its pruning window and mask-update interval or AC/DC phase
    (`pruning.Clock`), whether it is AC/DC, and the n of an n:m pattern (only the group size m
    shapes the program) -- and the model's shapes. Dense runs (`method="none"`) group with GMP runs: in a group a dense run is GMP with
    target 0, which keeps every weight and makes the same updates; an AC/DC run is GMP's program
    on AC/DC's timetable (`pruning.PruningConfig.method_is_acdc`). Runs that start from a
    checkpoint (`init`), and one-shot runs, train alone.
    """
    c = config.resolved()
    if c.init is not None or c.method not in ("gmp", "none", "acdc"):
        return None
    d = {k: v for k, v in c.to_dict().items()
         if k not in ("seed", "sparsity", "nnz", "method", "steps", "acdc_phase")}
    d["schedule"] = {k: v for k, v in d["schedule"].items() if k not in ("every", "start", "end")}
    nm = parse_pattern(c.pattern)
    if nm is not None:
        d["pattern"] = f"n:{nm[1]}"
    d["model"] = model_config(c).to_dict()
    return json.dumps(d, sort_keys=True, default=str)


class LaneInputs(NamedTuple):
    """What distinguishes the run a lane trains, as data of the compiled program (one row per lane).

    seed: the run's seed (init key fold_in(key(seed), 0), step keys fold_in(fold_in(key(seed), 1),
    t), data stream); clock: its length and pruning timetable (`pruning.Clock`); S, k: per
    prunable leaf, the target sparsity and the final non-zero count (float64 on the host);
    n: the n of its n:m pattern (0 when unstructured).
    """

    seed: Any
    clock: Any
    S: Any
    k: Any
    n: Any


@dataclass
class _Run:
    """Host-side state of one run of a `train_runs` call."""

    index: int
    config: TrainConfig
    out_dir: Path
    task: Task
    manager: Any = None
    spent: Spent = dataclasses.field(default_factory=Spent)
    end: int = 0  # the step this call trains it to (its length, or stop_after)
    logged: list = dataclasses.field(default_factory=list)  # (loss, nnz) since the last log record
    result: dict | None = None
    pretrained: Any = None  # the --init checkpoint's weights, checked against the model before anything is written


def _gcd_block(values, most: int) -> int:
    """The largest divisor of gcd(values) that is at most `most`: a block that never straddles a
    run's start, end or checkpoint."""
    k = 0
    for v in values:
        k = math.gcd(k, int(v))
    k = k or most
    return max(d for d in range(1, min(k, most) + 1) if k % d == 0)


def train_runs(configs, out_dirs, *, lanes: list[list[int]] | None = None, progress: bool = True,
               stop_after: int | None = None, task: Task | None = None, devices=None,
               on_result: Callable[[int, dict], None] | None = None, block: int | None = None,
               device_data: bool = True) -> list[dict]:
    """Train (or resume) runs that share one `group_signature` as ONE compiled program; one result
    per run, in order. `train` is this with a single run.

    The program is `jax.vmap` over *lanes* of `jax.lax.scan` over a block of steps. A lane trains
    its runs one after another (`lanes`: run indices per lane; default one run per lane): when a
    run ends, its lane is re-initialised for the next one, so runs of different lengths pack into
    lanes of about equal work (`sweep.group.lanes`). A run's seed, length, pruning timetable and
    targets are inputs of the program (`LaneInputs`), never constants: one compilation serves
    every sparsity, seed and length on one dense width.

    Batches of the synthetic streams are generated inside the program from (seed, split, index)
    (`device_batch_fn`); other streams (C4, image folders, tests' stand-ins) are built on the host
    and fed to the scan. Each run keeps the single-run layout of its folder: config.json, log.jsonl,
    orbax checkpoints every `checkpoint_every` steps (rounded to whole blocks) and at its end, and
    result.json. Everything a step computes is a pure function of (seed, step), so a run killed
    anywhere, also inside a block, resumes from its last checkpoint to the numbers of a run never
    stopped. A run whose loss becomes NaN/inf is recorded "diverged" and its lane moves on.

    `stop_after`: train each run to at most that many steps in total (checkpointed, status
    "stopped"; a later call resumes it). `on_result(i, result)` is called as run i ends, so that a
    caller can record it at once. Raises `Diverged` only for a single run (as `train` always did).
    `block`: the most steps per dispatch (default MAX_BLOCK; 1 = one dispatch per step, as an
    engine without `lax.scan`); `device_data=False` builds every batch on the host, as an engine
    without device streams (both for benchmarks and checks; the numbers are the same).
    """
    from tqdm.auto import tqdm

    from bigsparse_lib import pruning

    enable_compilation_cache()
    configs = [c.resolved() for c in configs]
    out_dirs = [Path(o) for o in out_dirs]
    if not configs or len(configs) != len(out_dirs):
        raise ValueError("train_runs needs one output directory per config")
    if len(configs) > 1 and (task is not None or len({group_signature(c) for c in configs} - {None}) != 1
                             or any(group_signature(c) is None for c in configs)):
        raise ValueError("train_runs trains several runs together only if they share one group_signature")
    lanes = [list(l) for l in (lanes or [[i] for i in range(len(configs))]) if l]
    if sorted(i for l in lanes for i in l) != list(range(len(configs))):
        raise ValueError(f"lanes must hold each of the {len(configs)} runs once, got {lanes}")

    results: list[dict | None] = [None] * len(configs)
    runs: list[_Run] = []
    for i, (c, o) in enumerate(zip(configs, out_dirs)):
        finished = _finished_result(o, c)
        if finished is not None:
            results[i] = finished
            if on_result:
                on_result(i, finished)
        # Everything that can reject a config (nnz too small, a mismatched --init) runs before
        # anything is written to its folder.
        runs.append(_Run(i, c, o, None if finished is not None else (task or make_task(c))))
    lanes = [[i for i in lane if results[i] is None] for lane in lanes]
    lanes = [lane for lane in lanes if lane]
    if not lanes:
        return results  # type: ignore[return-value]

    c0, t0 = configs[lanes[0][0]], runs[lanes[0][0]].task
    dtype = DTYPES[c0.dtype]
    mesh = data_mesh(c0.batch_size, devices)
    replicated = NamedSharding(mesh, P())
    # A group runs GMP's wrapper: a dense run is GMP with target 0, an AC/DC run GMP's program on
    # its own timetable (its clock's acdc flag), an n:m run feeds its n as data. An AC/DC run alone
    # does too, so that it compiles the very program of a GMP run alone on its width (Table 6
    # trains its AC/DC runs after the GMP ones: the compilation cache then serves them). A dense
    # run alone keeps method "none" and compiles no pruning at all.
    prune_cfg = pruning_config(c0, "gmp" if len(configs) > 1 or c0.method == "acdc" else None)
    params_shape = jax.eval_shape(t0.init, jax.random.key(0))
    target_def = jax.tree_util.tree_structure(params_shape)
    sparsifiable = t0.sparsifiable(params_shape)
    flags = _flag_list(params_shape, sparsifiable)
    sizes = [int(np.prod(x.shape, dtype=np.int64)) for x in jax.tree.leaves(params_shape)]
    dense = int(sum(n for n, f in zip(sizes, flags) if f))
    # Leaves a run may prune: every sparsifiable leaf, whatever this run's target, so that a
    # checkpoint's state has the same structure however its run was grouped.
    targets = [None if r.task is None else [0.0 if c.method == "none" else float(S)
                                            for S in jax.tree.leaves(r.task.targets)]
               for c, r in zip(configs, runs)]
    cols = [j for j in range(len(sizes)) if flags[j] or any(t[j] > 0 for t in targets if t is not None)]
    leaf_names = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params_shape)]

    def lane_inputs(i: int) -> LaneInputs:
        c = configs[i]
        own = pruning_config(c, "gmp" if c.method == "none" else None)
        clock = own.clock(c.steps)  # this run's own window (Table 5), or AC/DC's phases (Table 6)
        S = [targets[i][j] for j in cols]
        k = [pruning.keep_count(x, sizes[j]) if x > 0 else sizes[j] for x, j in zip(S, cols)]
        if own.nm is not None:  # Algorithm 1's groups of m must tile each kernel's axis 0
            shapes = jax.tree.leaves(params_shape)
            for x, j in zip(S, cols):
                if x > 0:
                    pruning._check_nm_leaf(shapes[j].shape, x, *own.nm, name=leaf_names[j])
        return LaneInputs(seed=np.int32(c.seed),
                          clock=clock.as_data(),
                          S=np.asarray(S, np.float32), k=np.asarray(k, np.int32),
                          n=np.int32(0 if own.nm is None else own.nm[0]))

    def make_tx(lane: LaneInputs, config: TrainConfig, axis_name: str | None = None):
        if t0.optimizer is not None:  # a task's own optimizer (tests' stand-ins): one static run
            return t0.optimizer(config, t0)
        inner = optim.for_family(config.family, lane.clock.total, config.preset,
                                 learning_rate=config.learning_rate)
        S_leaves, k_leaves = [0.0] * len(sizes), list(sizes)
        for n, j in enumerate(cols):
            S_leaves[j], k_leaves[j] = lane.S[n], lane.k[n]
        return pruning.sparsify_leaves(inner, target_def, S_leaves, k_leaves, lane.clock, prune_cfg,
                                       axis_name=axis_name, n=None if prune_cfg.nm is None else lane.n)

    def nnz(params):
        leaves = [x for x, f in zip(jax.tree.leaves(params), flags) if f]
        return jnp.stack([jnp.count_nonzero(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.int32)

    device_batch = getattr(t0.train_data, "device_batch_fn", None) if device_data else None
    train_batch = device_batch(c0.batch_size) if device_batch else None

    def lane_init(lane: LaneInputs):
        params = t0.init(jax.random.fold_in(jax.random.key(lane.seed), 0))
        return params, make_tx(lane, c0).init(params)

    def lane_block(params, opt_state, t, lane: LaneInputs, xs):
        """K steps of one lane's run from its step t (lax.scan); per step: loss, nnz per kernel."""
        tx = make_tx(lane, c0, axis_name=LANES)
        step_key = jax.random.fold_in(jax.random.key(lane.seed), 1)

        def step(carry, x):
            params, opt_state, t = carry
            batch = x
            loss, grads = jax.value_and_grad(t0.loss_fn)(params, batch, rng=jax.random.fold_in(step_key, t),
                                                         dtype=dtype)
            updates, opt_state = tx.update(grads, opt_state, params)
            # nnz of the weights this step trained with: the sparse cost of the step (§3.3 (b)).
            return (optax.apply_updates(params, updates), opt_state, t + 1), (loss, nnz(params))

        (params, opt_state, _), (loss, counts) = jax.lax.scan(step, (params, opt_state, t), xs, length=K)
        return params, opt_state, loss, counts

    R = len(lanes)

    def stack(trees):
        return jax.tree.map(lambda *x: np.stack(x), *trees)

    init_all = _jit(jax.vmap(lane_init), out_shardings=replicated)

    @functools.partial(_jit, out_shardings=replicated, donate_argnums=(0, 1))
    def pick_fresh(params, opt_state, new_p, new_o, fresh):
        pick = lambda n, o: jnp.where(fresh.reshape((-1,) + (1,) * (o.ndim - 1)), n, o)  # noqa: E731
        return jax.tree.map(pick, new_p, params), jax.tree.map(pick, new_o, opt_state)

    def reinit(params, opt_state, lane_in, fresh):
        """Lanes where `fresh` is True start their (new) run from its initial state. The initial
        states come from the same compiled program as the group's first ones (`init_all`)."""
        return pick_fresh(params, opt_state, *init_all(lane_in), fresh)

    @functools.partial(_jit, out_shardings=replicated)
    def put_lane(params, opt_state, i, p, o):
        return (jax.tree.map(lambda a, x: a.at[i].set(x), params, p),
                jax.tree.map(lambda a, x: a.at[i].set(x), opt_state, o))

    def solo_shapes(i):
        lane = lane_inputs(i)
        p, o = jax.eval_shape(lambda: lane_init(jax.tree.map(jnp.asarray, lane)))
        single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        on = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single), tree)  # noqa: E731
        return on(p), on(o)

    def resume_step(r: _Run) -> int:
        """The newest intact checkpoint of run r that belongs to r's config (0: none).

        A checkpoint that does not restore is reported in one line, set aside (moved, never
        deleted) and the next older one is tried. A checkpoint of another config (a copied or
        reused folder, with or without its config.json) is refused before anything is written.
        """
        mine = json.loads(json.dumps(r.config.to_dict()))
        while True:
            step = r.manager.latest_step()
            if step is None:
                return 0
            try:
                _, _, meta = _restore(r.manager, step, *solo_shapes(r.index))
            except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint fails over the same way
                aside = _set_aside(r.out_dir, step)
                print(f"bigsparse: checkpoint {step} of {r.out_dir} is unreadable ({type(e).__name__}); "
                      f"moved to {aside}; resuming from the previous checkpoint", file=sys.stderr)
                r.manager.close()
                r.manager = _manager(r.out_dir)
                continue
            theirs = meta.get("config")
            if theirs is not None and theirs != mine:
                diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
                raise InputError(f"{{arg}} {r.out_dir}: its checkpoint at step {step} belongs to a run of a "
                                 f"different config (differs in {', '.join(diff)}); choose another directory", arg="out")
            return step

    # The block: K divides every run's length, start and stop, and the checkpoint interval.
    starts = {}
    for lane in lanes:
        for i in lane:
            r = runs[i]
            if (r.out_dir / CHECKPOINT_DIR).is_dir():
                r.manager = _manager(r.out_dir)
                starts[i] = resume_step(r)
            else:
                starts[i] = 0
            if starts[i] == 0 and r.config.init is not None:  # a mismatched --init is refused here, first
                r.pretrained = load_params(r.config.init, like=params_shape)
            r.out_dir.mkdir(parents=True, exist_ok=True)
            _check_config(r.out_dir, r.config)
            r.manager = r.manager or _manager(r.out_dir)
            r.end = r.config.steps if stop_after is None else min(r.config.steps, int(stop_after))
    # A block's batches are at most XS_BYTES: K steps of R lanes' batches live at once.
    example = jax.eval_shape(lambda: train_batch(jnp.int32(0), jnp.int32(0), jnp.int32(0))) if train_batch else \
        t0.train_data.batch(0, c0.batch_size)
    per_step = sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(example))
    most = max(1, min(block or MAX_BLOCK, XS_BYTES // max(1, R * per_step)))
    K = _gcd_block([r.end for lane in lanes for r in map(runs.__getitem__, lane)]
                   + list(starts.values()) + [c0.checkpoint_every], most)
    block_fn = _jit(jax.vmap(lane_block, axis_name=LANES), donate_argnums=(0, 1))
    # The synthetic streams' batches come from their own compiled program, shared by every width
    # (the data do not depend on the model): each width's program compiles only the model's step.
    gen_fn = _batch_block_program(train_batch, K) if train_batch else None

    eval_fn = _eval_program(t0, c0, dtype, device_data)
    queue = [list(lane) for lane in lanes]
    current = [q.pop(0) for q in queue]
    t_local = np.zeros(R, np.int64)
    alive = np.ones(R, bool)
    lane_in = stack([lane_inputs(i) for i in current])
    params, opt_state = init_all(jax.device_put(lane_in, replicated))  # as `reinit` passes it: one compilation

    def start_run(slot: int) -> None:
        """Load run current[slot] into its lane: fresh init (done by `reinit`), a checkpoint, or --init."""
        nonlocal params, opt_state
        r = runs[current[slot]]
        step = starts[r.index]
        _truncate_log(r.out_dir, step)
        t_local[slot] = step
        if step:
            p_shape, o_shape = solo_shapes(r.index)
            p, o, meta = _restore(r.manager, step, p_shape, o_shape)
            p, o = jax.device_put((p, o), replicated)
            r.spent = Spent.from_dict(meta["spent"])
            assert r.spent.steps == step, (r.spent, step)
            params, opt_state = put_lane(params, opt_state, slot, p, o)
        elif r.config.init is not None:
            p = jax.device_put(r.pretrained, replicated)
            r.pretrained = None
            o = make_tx(jax.tree.map(jnp.asarray, lane_inputs(r.index)), r.config).init(p)
            params, opt_state = put_lane(params, opt_state, slot, p, o)

    for slot in range(R):
        start_run(slot)
    total_work = sum(runs[i].end - starts[i] for lane in lanes for i in lane)
    bar = tqdm(total=total_work, disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"{c0.family}/{c0.preset} " + (f"{len(configs)} runs in {R} lanes" if len(configs) > 1
                                                   else f"S={c0.sparsity:g}"))
    data_per_step = c0.batch_size * t0.units_per_example

    def host_batches():
        """[R, K, ...] batches of the streams without a device generator (zeros for idle lanes)."""
        per_lane = []
        for slot in range(R):
            data = runs[current[slot]].task.train_data
            per_lane.append(stack([data.batch(int(t_local[slot]) + k, c0.batch_size) for k in range(K)]))
        return jax.device_put(stack(per_lane), NamedSharding(mesh, P(None, None, "data")))

    def log(r: _Run, force: bool = False) -> None:
        if not r.logged or not (force or r.spent.steps % r.config.log_every == 0):
            return
        last_nnz = r.logged[-1][1]
        _append_log(r.out_dir, {"step": r.spent.steps, "loss": float(np.mean([x for x, _ in r.logged])),
                                "sparsity": 1.0 - last_nnz / dense if dense else 0.0, "nnz": last_nnz,
                                **{k: v for k, v in r.spent.to_dict().items() if k != "steps"}})
        r.logged.clear()

    def end_run(slot: int, result: dict) -> None:
        r = runs[current[slot]]
        r.result = results[r.index] = result
        if on_result:
            on_result(r.index, result)
        bar.update(r.end - r.spent.steps)  # what a diverged run leaves untrained
        if queue[slot]:
            current[slot] = queue[slot].pop(0)
        else:
            alive[slot] = False

    signalled: list[str] = []
    handlers = _catch_signals(signalled)
    try:
        while alive.any():
            if signalled or STOP_REQUESTS:
                _checkpoint_and_stop((signalled or STOP_REQUESTS)[0], [runs[current[s]] for s in np.flatnonzero(alive)],
                                     jax.device_get((params, opt_state)), np.flatnonzero(alive))
            xs = (gen_fn(jnp.asarray([configs[i].seed for i in current], jnp.int32), jnp.asarray(t_local, jnp.int32))
                  if gen_fn else host_batches())
            params, opt_state, loss, counts = block_fn(params, opt_state, jnp.asarray(t_local, jnp.int32),
                                                       jax.device_put(lane_in, replicated), xs)
            loss, counts = jax.device_get((loss, counts))
            fresh = np.zeros(R, bool)
            host = None
            for slot in np.flatnonzero(alive):
                r = runs[current[slot]]
                diverged = None
                for k in range(K):
                    value, n = float(loss[slot, k]), int(np.sum(counts[slot, k], dtype=np.int64))
                    if not math.isfinite(value):
                        diverged = f"training loss became {value} at step {r.spent.steps + 1}"
                        break
                    r.spent = r.spent.add_step(n, dense, data_per_step)
                    r.logged.append((value, n))
                    log(r)
                bar.update(K if diverged is None else k)
                t_local[slot] += K
                if diverged is not None:
                    try:
                        _diverged(r.out_dir, r.config, r.spent.steps, diverged)
                    except Diverged as e:
                        end_run(slot, {"status": "diverged", "reason": str(e)})
                    fresh[slot] = True
                    continue
                done = r.spent.steps
                if done % r.config.checkpoint_every == 0 or done == r.end:
                    log(r, force=True)
                    if host is None:  # slice on the host: no per-lane programs
                        host = jax.device_get((params, opt_state))
                    p_i = jax.tree.map(lambda x: x[slot], host[0])
                    o_i = jax.tree.map(lambda x: x[slot], host[1])
                    _save(r.manager, done, p_i, o_i, {"spent": r.spent.to_dict(), "config": r.config.to_dict()})
                if done == r.end:
                    if done < r.config.steps:
                        result = {"status": "stopped", "steps": done, "config": r.config.to_dict(),
                                  "recipe_version": recipe_version(r.config.family)}
                    else:
                        r.manager.wait_until_finished()
                        try:
                            result = _finish(r.out_dir, r.config, sparsifiable, p_i,
                                             eval_fn(p_i, r.task, r.config), r.spent, dense,
                                             units_per_example=r.task.units_per_example, devices=int(mesh.size))
                        except Diverged as e:
                            result = {"status": "diverged", "reason": str(e)}
                    end_run(slot, result)
                    fresh[slot] = alive[slot]
            if fresh.any():
                lane_in = stack([lane_inputs(i) for i in current])
                params, opt_state = reinit(params, opt_state, jax.device_put(lane_in, replicated),
                                           jax.device_put(fresh, replicated))
                for slot in np.flatnonzero(fresh & alive):
                    start_run(slot)
        bar.close()
    finally:
        _restore_signals(handlers)
        for r in runs:
            if r.manager is not None:
                r.manager.close()
    if len(configs) == 1 and results[0] is not None and results[0].get("status") == "diverged":
        raise Diverged(results[0]["reason"])
    return results  # type: ignore[return-value]


SPLIT_TRAIN, SPLIT_EVAL = 0, 1  # data.toy.SPLIT_IDS


def _batch_block_program(make, K: int):
    """(seeds [R], starts [R]) -> the training batches of steps start .. start+K-1 of R runs, [R, K, ...],
    generated on the device by a stream's `device_batch_fn` (`make`)."""
    def lane(seed, t0):
        return jax.vmap(lambda k: make(seed, jnp.int32(SPLIT_TRAIN), t0 + k))(jnp.arange(K, dtype=jnp.int32))
    return _jit(jax.vmap(lane))


def _catch_signals(signalled: list[str]) -> dict:
    """SIGTERM and SIGINT only note the signal: the loop stops after its current block (in the main
    thread only; elsewhere the default behaviour stays). Returns the previous handlers."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        old[sig] = signal.signal(sig, lambda num, _frame: signalled.append(signal.Signals(num).name))
    return old


def _restore_signals(old: dict) -> None:
    import signal

    for sig, handler in old.items():
        signal.signal(sig, handler)


def _checkpoint_and_stop(name: str, live: list, host, slots) -> None:
    """Save every run in flight at its last finished step, then raise `Interrupted`."""
    for r, slot in zip(live, slots):
        if r.spent.steps and r.manager.latest_step() != r.spent.steps:
            _save(r.manager, r.spent.steps, jax.tree.map(lambda x: x[slot], host[0]),
                  jax.tree.map(lambda x: x[slot], host[1]), {"spent": r.spent.to_dict(), "config": r.config.to_dict()})
        r.manager.wait_until_finished()
    where = ", ".join(f"{r.out_dir} at step {r.spent.steps}" for r in live)
    raise Interrupted(f"{name}: checkpointed {where}; run the same command again to resume")


def _eval_program(task: Task, config: TrainConfig, dtype, device_data: bool = True):
    """eval(params, task, config) -> the mean loss over the first `eval_batches` held-out batches
    of the fixed eval set (`EVAL_SEED`), the same for every run.

    Synthetic streams generate those batches inside one compiled program (the same batches at
    every call); other streams feed them from the host.
    """
    device_batch = getattr(task.eval_data, "device_batch_fn", None) if device_data else None
    loss = _jit(lambda p, b: task.loss_fn(p, b, rng=None, dtype=dtype))
    if device_batch is None:
        def evaluate(params, run_task: Task, c: TrainConfig) -> float:
            losses = [loss(params, run_task.eval_data.batch(i, c.batch_size)) for i in range(c.eval_batches)]
            return float(np.mean([float(x) for x in losses]))
        return evaluate
    make = device_batch(config.batch_size)
    gen = _jit(lambda seed, n: jax.vmap(lambda i: make(seed, jnp.int32(SPLIT_EVAL), i))(jnp.arange(n, dtype=jnp.int32)),
                  static_argnums=1)
    mean_loss = _jit(lambda params, batches: jnp.mean(jax.lax.map(
        lambda b: task.loss_fn(params, b, rng=None, dtype=dtype).astype(jnp.float32), batches)))

    def evaluate(params, run_task: Task, c: TrainConfig) -> float:
        return float(mean_loss(params, gen(jnp.int32(EVAL_SEED), int(c.eval_batches))))
    return evaluate


def train(config: TrainConfig, out_dir: str | Path, *, progress: bool = True, stop_after: int | None = None,
          task: Task | None = None, devices=None) -> dict:
    """Train (or resume) the run `config` in `out_dir`; return (and write) its result.

    A group of one of `train_runs`. Resumes from the latest orbax checkpoint in `out_dir` if
    there is one. `stop_after` ends the process's share of the run after that many steps in
    total (checkpointed, status "stopped", no result.json): a later call resumes it. Raises
    `Diverged` if the loss becomes NaN/inf (after writing result.json with status "diverged").
    """
    return train_runs([config], [out_dir], progress=progress, stop_after=stop_after, task=task,
                      devices=devices)[0]
