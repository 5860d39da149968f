"""One helper per paper figure, so chapters stay a line per plot.

Each takes the tidy table and/or a law, draws on a given matplotlib Axes (or makes a
figure), labels axes with the paper's symbols, and returns the figure.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import pandas as pd

from bigsparse_lib.law import SparseLaw, predict, training_flops

SPARSITY_COLORS = {0.0: "#1f77b4", 0.5: "#ff7f0e", 0.75: "#2ca02c", 0.875: "#d62728", 0.9375: "#9467bd"}


def _color(S: float):
    return SPARSITY_COLORS.get(round(float(S), 4), None)


def _label_data(df: pd.DataFrame) -> str:
    fam = df["family"].iloc[0] if "family" in df.columns and len(df) else ""
    return "images" if fam == "vit" else "tokens" if fam in ("t5", "chinchilla") else "examples"


def predicted_vs_measured(df: pd.DataFrame, law, *, held_out=None, ax=None, title: str = ""):
    """Fig. 1 (left): predicted against measured loss, one colour per sparsity.

    `held_out` (boolean mask) marks points the fit did not see; they are drawn as stars.
    """
    fig, ax = _axes(ax, (4.8, 4.4))
    pred = np.asarray(predict(law, df["sparsity"].to_numpy(), df["nnz"].to_numpy(), df["data"].to_numpy()))
    held_out = np.zeros(len(df), bool) if held_out is None else np.asarray(held_out, bool)
    for S, grp in df.groupby("sparsity"):
        idx = df.index.get_indexer(grp.index)
        for mask, marker, suffix in ((~held_out[idx], "o", ""), (held_out[idx], "*", " (held out)")):
            if mask.any():
                ax.scatter(grp["loss"].to_numpy()[mask], pred[idx][mask], marker=marker, s=60 if marker == "*" else 22,
                           color=_color(S), label=f"S = {S:g}{suffix}", edgecolor="k" if marker == "*" else None)
    lo, hi = float(min(df["loss"].min(), pred.min())), float(max(df["loss"].max(), pred.max()))
    pad = 0.03 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set(xlabel="measured loss L", ylabel="predicted loss L(S, N, D)", title=title)
    ax.legend(fontsize=8)
    return fig


def loss_vs_nnz_by_data(df: pd.DataFrame, *, c: float = 1.0, law=None, axes=None, title: str = ""):
    """Fig. 2: L - c against non-zeros N, one panel per training length, one line per sparsity (log-log).

    The paper subtracts c = 1 "to account for power law saturation". With `law`, the
    law's curves are drawn through the points.
    """
    lengths = sorted(df["data"].unique())
    if axes is None:
        fig, axes = plt.subplots(1, len(lengths), figsize=(4.0 * len(lengths), 3.6), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    unit = _label_data(df)
    for ax, D in zip(axes, lengths):
        sub = df[df["data"] == D]
        for S, grp in sub.groupby("sparsity"):
            grp = grp.sort_values("nnz")
            ax.plot(grp["nnz"], grp["loss"] - c, "o" if law is not None else "o-", color=_color(S), label=f"S = {S:g}")
            if law is not None:
                n = np.geomspace(grp["nnz"].min(), grp["nnz"].max(), 50)
                ax.plot(n, np.asarray(predict(law, S, n, D)) - c, "-", color=_color(S), lw=1)
        steps = f"{int(sub['steps'].iloc[0]):,} steps, " if "steps" in sub.columns else ""
        ax.set(xscale="log", yscale="log", xlabel="non-zero parameters N", title=f"{steps}D = {D:.3g} {unit}")
    axes[0].set_ylabel(f"loss L - {c:g}")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_vs_data_by_sparsity(df: pd.DataFrame, law, *, axes=None, title: str = ""):
    """Fig. 3: loss against data D, one panel per sparsity, one colour per model size, with the joint law."""
    sparsities = sorted(df["sparsity"].unique())
    if axes is None:
        fig, axes = plt.subplots(1, len(sparsities), figsize=(3.6 * len(sparsities), 3.6), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    sizes = sorted(df["nnz"].round(-3).unique())
    cmap = plt.get_cmap("viridis", max(len(sizes), 2))
    d = np.geomspace(df["data"].min() / 1.3, df["data"].max() * 1.3, 60)
    for ax, S in zip(axes, sparsities):
        sub = df[df["sparsity"] == S]
        for i, n in enumerate(sizes):
            grp = sub[np.isclose(sub["nnz"].round(-3), n)]
            if len(grp) == 0:
                continue
            ax.plot(grp["data"], grp["loss"], "o", color=cmap(i), ms=4)
            ax.plot(d, np.asarray(predict(law, S, grp["nnz"].iloc[0], d)), "-", color=cmap(i), lw=1,
                    label=f"N = {grp['nnz'].iloc[0] / 1e6:.3g}M")
        ax.set(xscale="log", xlabel=f"data D ({_label_data(df)})", title=f"S = {S:g}")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("loss L")
    fullest = max(axes, key=lambda a: len(a.get_legend_handles_labels()[0]))
    axes[0].legend(*fullest.get_legend_handles_labels(), fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def optimal_sparsity_contours(law: SparseLaw, *, cost: str = "sparse", N=(1e6, 1e10), C=(1e17, 1e24),
                              levels: Sequence[float] = (0.0, 0.5, 0.75, 0.875), resolution: int = 160,
                              ax=None, title: str = ""):
    """Fig. 1 (right) / Fig. 4: S_opt(N, C) as a colour map with the contour lines S_opt = S and the
    dense compute-optimal (Chinchilla) line."""
    from bigsparse_lib import optimal

    fig, ax = _axes(ax, (5.4, 4.4))
    n = np.geomspace(*N, resolution)
    c = np.geomspace(*C, resolution)
    NN, CC = np.meshgrid(n, c)
    S = optimal.s_opt(law, NN, CC, cost=cost)
    mesh = ax.pcolormesh(NN, CC, S, shading="auto", cmap="magma_r", vmin=0, vmax=1)
    fig.colorbar(mesh, ax=ax, label="optimal sparsity S_opt")
    for level in levels:
        line = optimal.contour_compute(law, level, n, cost=cost)
        color = "w" if level > 0.3 else "k"
        ax.plot(n, line, "-", color=color, lw=1.2)
        inside = np.flatnonzero((line > C[0]) & (line < C[1]))
        if inside.size:  # label the line where it crosses the middle of the visible part
            i = inside[len(inside) // 2]
            ax.annotate(f"S = {level:g}", (n[i], line[i]), color=color, fontsize=8, rotation=30,
                        xytext=(-4, 6), textcoords="offset points", ha="right")
    ax.plot(n, optimal.chinchilla_compute(law, n), "c--", lw=2, label="Chinchilla (dense compute-optimal)")
    ax.set(xscale="log", yscale="log", xlim=N, ylim=C, xlabel="non-zero parameters N",
           ylabel=f"training FLOPs C ({cost} cost)", title=title or f"S_opt, {cost} FLOPs")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def loss_vs_flops(df: pd.DataFrame, law=None, *, cost: str = "sparse", ax=None, title: str = ""):
    """Fig. 5: loss against (sparse) pretraining FLOPs, one colour per sparsity.

    Points of one sparsity and one size trace a training-length curve; where the sparse
    curve drops below the dense one at equal non-zeros, sparsity has become optimal.
    """
    fig, ax = _axes(ax, (5.4, 4.0))
    for (S, n), grp in df.groupby(["sparsity", "nnz"]):
        grp = grp.sort_values("data")
        C = training_flops(grp["nnz"].to_numpy(), grp["data"].to_numpy(), S, cost=cost)
        ax.plot(C, grp["loss"], "o-", color=_color(S), ms=4, lw=1,
                label=f"S = {S:g}" if n == df[df["sparsity"] == S]["nnz"].min() else None)
        if law is not None:
            d = np.geomspace(grp["data"].min(), grp["data"].max() * 4, 40)
            ax.plot(training_flops(n, d, S, cost=cost), np.asarray(predict(law, S, n, d)), ":", color=_color(S), lw=1)
    ax.set(xscale="log", xlabel=f"training FLOPs C ({cost} cost)", ylabel="loss L", title=title)
    ax.legend(fontsize=8)
    return fig


def _axes(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


# ---- Extensions (§4) and ablations (App. B) ---------------------------------------------------------------
PATTERN_STYLES = {"2:4": ("#ff7f0e", "o"), "4:8": ("#ff7f0e", "s"), "1:4": ("#2ca02c", "o"), "2:8": ("#2ca02c", "s")}


def nm_masks(w, masks: dict, *, m: int, axes=None, title: str = ""):
    """Algorithm 1 (App. A.1) on a small matrix: |w| and, per panel, the mask it keeps.

    `masks`: label -> boolean mask of w's shape. Groups of `m` consecutive entries along
    axis 0 (the rows here) are outlined, so "at least n kept per group" can be read off.
    """
    w = np.asarray(w)
    panels = [("|w|", np.abs(w), None)] + [(label, np.where(mk, np.abs(w), np.nan), mk) for label, mk in masks.items()]
    if axes is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    vmax = float(np.abs(w).max())
    for ax, (label, values, mk) in zip(axes, panels):
        ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                kept = mk is None or bool(mk[i, j])
                ax.text(j, i, f"{abs(w[i, j]):.2f}", ha="center", va="center", fontsize=7,
                        color="k" if kept else "0.6")
        for g in range(1, w.shape[0] // m):
            ax.axhline(g * m - 0.5, color="k", lw=1.5)
        kept = "" if mk is None else f"\n{int(np.sum(mk))} of {mk.size} kept"
        ax.set(xticks=[], yticks=[], title=f"{label}{kept}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_vs_nnz_nm(df: pd.DataFrame, laws: dict | None = None, *, base=None, ax=None, title: str = ""):
    """Fig. 6: loss against non-zeros N for a subset of n:m data (one length), dense and each pattern.

    `df`: tidy rows with a `pattern` column ("unstructured" for dense); `laws`: pattern
    family ("n:4", "n:8") -> law, drawn through that family's patterns; `base`: the dense
    law, drawn through the dense points.
    """
    fig, ax = _axes(ax, (5.4, 4.2))
    n = np.geomspace(df["nnz"].min() / 1.2, df["nnz"].max() * 1.2, 50)
    D = float(df["data"].iloc[0])
    dense = df[df["sparsity"] == 0].sort_values("nnz")
    ax.plot(dense["nnz"], dense["loss"], "o", color=_color(0.0), label="dense")
    if base is not None:
        ax.plot(n, np.asarray(predict(base, 0.0, n, D)), "-", color=_color(0.0), lw=1)
    for pattern, grp in df[df["sparsity"] > 0].groupby("pattern"):
        color, marker = PATTERN_STYLES.get(pattern, ("k", "^"))
        grp = grp.sort_values("nnz")
        ax.plot(grp["nnz"], grp["loss"], marker, color=color, mfc="none" if marker == "s" else color,
                label=f"{pattern} (S = {grp['sparsity'].iloc[0]:g})")
        law = (laws or {}).get(f"n:{pattern.split(':')[1]}")
        if law is not None:
            ax.plot(n, np.asarray(predict(law, grp["sparsity"].iloc[0], n, D)), "--" if marker == "s" else "-",
                    color=color, lw=1)
    ax.set(xscale="log", xlabel="non-zero parameters N", ylabel="loss L", title=title)
    ax.legend(fontsize=8)
    return fig


def pruned_vs_scratch(table: pd.DataFrame, scratch: pd.DataFrame | None = None, law=None, *, axes=None,
                      title: str = ""):
    """Table 4 drawn: per sparsity, loss against data of sparsifying from scratch, and the pruned model.

    `table`: rows of `pretrained.table4` (one per dense model and S); `scratch`: the
    from-scratch runs (tidy); `law`: drawn as the from-scratch loss curve at each pruned
    model's N. The pruned model sits at D_prune (filled) and the law's D_scratch (open).
    """
    sparsities = sorted(table["sparsity"].unique())
    if axes is None:
        fig, axes = plt.subplots(1, len(sparsities), figsize=(4.0 * len(sparsities), 3.6), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    sizes = sorted(table["dense_nnz"].unique())
    cmap = plt.get_cmap("viridis", max(len(sizes), 2))
    for ax, S in zip(axes, sparsities):
        for _, row in table[table["sparsity"] == S].iterrows():
            color = cmap(sizes.index(row["dense_nnz"]))
            label = f"dense {row['dense_nnz']:.3g} -> N = {row['nnz']:.3g}"
            ax.plot([row["D_prune"]], [row["loss_pruned"]], "*", ms=12, color=color, mec="k", label=label)
            ax.axhline(row["loss_pruned"], color=color, lw=0.6, ls=":")
            hi = row["D_prune"] * 64
            if scratch is not None and len(scratch):
                grp = scratch[np.isclose(scratch["nnz"], row["nnz"], rtol=0.05) & np.isclose(scratch["sparsity"], S)]
                ax.plot(grp["data"], grp["loss"], "o", color=color, ms=5)
                hi = max(hi, float(grp["data"].max()) * 1.5) if len(grp) else hi
            if law is not None:
                d = np.geomspace(row["D_prune"] / 1.5, hi, 60)
                ax.plot(d, np.asarray(predict(law, S, row["nnz"], d)), "-", color=color, lw=1)
                if np.isfinite(row.get("exc_law", np.nan)):
                    ax.plot([row["exc_law"] * row["D_prune"]], [row["loss_pruned"]], "o", mfc="none", mec=color, ms=9)
        ax.set(xscale="log", xlabel="data D of the sparse run", title=f"S = {S:g}")
    axes[0].set_ylabel("loss L")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def schedule_ablation(curves: dict, *, axes=None, title: str = ""):
    """Table 5 drawn: sparsity and training loss against step for each schedule variant.

    `curves`: label -> records of a run's log (`train.read_log`: step, loss, sparsity).
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    fig = axes[0].figure
    for label, log in curves.items():
        log = [r for r in log if "loss" in r and "sparsity" in r]
        steps = [r["step"] for r in log]
        axes[0].plot(steps, [r["sparsity"] for r in log], lw=1.2, label=label)
        axes[1].plot(steps, [r["loss"] for r in log], lw=1, label=label)
    axes[0].set(xlabel="step", ylabel="sparsity of the trained weights", title="schedule")
    axes[1].set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def gmp_vs_acdc(table6: pd.DataFrame, *, ax=None, title: str = ""):
    """Table 6 drawn: validation perplexity exp(L) against S, one line per (N, method).

    `table6`: `ablations.table6`'s rows (columns N, S, "ours: GMP ppl", "ours: AC/DC ppl").
    Any number of sizes: markers cycle, GMP solid and AC/DC dashed, one colour per size.
    """
    fig, ax = _axes(ax, (5.4, 3.8))
    markers = "o^sDvP*X"
    for k, (N, grp) in enumerate(table6.sort_values("S").groupby("N", sort=True)):
        for method, style in (("GMP", "-"), ("AC/DC", "--")):
            ax.plot(grp["S"], grp[f"ours: {method} ppl"], markers[k % len(markers)] + style, color=f"C{k}",
                    label=f"{method}, N = {int(N):,}")
    ax.set(xlabel="sparsity S", ylabel="validation perplexity exp(L)", title=title)
    ax.legend(fontsize=8)
    return fig


def fig2_beside_paper(ours: pd.DataFrame, published: pd.DataFrame, *, c_ours: float, c_paper: float,
                      title_ours: str = "ours", title_paper: str = "paper (released data)"):
    """Fig. 2 twice: the released runs (top row) above our sweep (bottom row), each L - c against N.

    Rows may have different numbers of lengths; unused panels are hidden. `ours` should hold
    one row per point (average seeds first: `evidence.seed_means`).
    """
    rows = [(published, c_paper, title_paper), (ours, c_ours, title_ours)]
    ncols = max(df["data"].nunique() for df, _, _ in rows)
    fig, axes = plt.subplots(2, ncols, figsize=(3.6 * ncols, 6.6), squeeze=False)
    for row, (df, c, title) in zip(axes, rows):
        n = df["data"].nunique()
        loss_vs_nnz_by_data(df, c=c, axes=row[:n])
        for ax in row[n:]:
            ax.set_visible(False)
        row[0].annotate(title, (0, 1.16), xycoords="axes fraction", fontsize=11, weight="bold")
    fig.tight_layout()
    return fig


def held_out_errors(held, model, *, ax=None, title: str = ""):
    """Held-out error |log(pred / L)| of every run against its distance outside the remaining data.

    `held`: `extrapolation.HeldOut`; `model`: its `extrapolation.ErrorModel`, drawn as the
    lines q = k d (sizes held out: distance in log N; lengths: in log D).
    """
    fig, ax = _axes(ax, (5.2, 3.8))
    runs = held.runs
    d = (runs.d_N + runs.d_D).to_numpy()
    for axis, marker, k in (("N", "o", model.k_N), ("D", "s", model.k_D)):
        sel = (runs.axis == axis).to_numpy()
        if not sel.any():
            continue
        jitter = 0.02 * (np.arange(sel.sum()) % 5 - 2)  # runs of one fold share a distance: spread them a little
        ax.scatter(d[sel] + jitter, np.abs(runs.r[sel]), marker=marker, s=16, alpha=0.6,
                   label=f"{'size' if axis == 'N' else 'length'} held out (distance in log {axis})")
        if np.isfinite(k):
            x = np.linspace(0, max(d.max(), 0.1) * 1.1, 20)
            ax.plot(x, k * x, lw=1.2, label=f"q = k_{axis} d, k_{axis} = {k:.3g}")
    ax.set(xlabel="distance outside the remaining data (log units)", ylabel="|log(pred / L)| of held-out runs",
           title=title)
    ax.legend(fontsize=7)
    return fig


def extrapolation_bands(df: pd.DataFrame, bands: dict, *, S: float, D: float, ax=None, title: str = ""):
    """Predicted loss against N beyond the data at one (S, D): each entry of `bands` is a label ->
    DataFrame with nnz, loss, lo, hi, ext_lo, ext_hi (`extrapolation.predictions(...).frame`),
    drawn as a line, a dark band (parameters only) and a light band (with extrapolation error).
    The measured runs at S and D are dots.
    """
    fig, ax = _axes(ax, (5.4, 3.8))
    for (label, f), color in zip(bands.items(), ("#1f77b4", "#d62728", "#2ca02c")):
        ax.plot(f.nnz, f.loss, color=color, lw=1.2, label=label)
        ax.fill_between(f.nnz, f.lo, f.hi, color=color, alpha=0.35, lw=0)
        ax.fill_between(f.nnz, f.ext_lo, f.ext_hi, color=color, alpha=0.12, lw=0)
    at = df[(np.isclose(df.sparsity, S)) & (np.isclose(df.data, D))]
    ax.scatter(at.nnz, at.loss, color="k", s=14, zorder=3, label=f"measured, S = {S:g}")
    ax.axvline(df.nnz.max(), color="gray", ls=":", lw=1)
    ax.set(xscale="log", xlabel="non-zeros N", ylabel="loss L", title=title)
    ax.legend(fontsize=7)
    return fig
