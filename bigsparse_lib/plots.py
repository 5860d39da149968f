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
