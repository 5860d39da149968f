"""Each figure of the book reproducible on its own: its data as CSV, a caption, and the commands.

One call replaces `plt.show()` in a chapter cell:

    fig = plots.loss_vs_nnz_by_data(data["t5"], c=1.0)
    figures.publish(fig, "fig2-t5-loss-vs-nnz", paper="Fig. 2",
                    caption="T5/C4 released sweep: L - 1 against non-zeros, one panel per length.")

`publish` shows the figure, then writes what it draws (read back from the matplotlib
artists, so the CSV is exactly what the reader sees) to `<name>.csv`, and shows under the
figure a caption naming the paper figure it reproduces, a download link to the CSV, and two
one-line commands: `bigsparse figure <name>.csv` redraws it from the CSV alone, and
`bigsparse book --scale S --only CHAPTER --no-html` recomputes the data.

Where the CSV goes: `bigsparse book` runs each chapter with $BIGSPARSE_FIGURE_DATA (the
staging folder's `data/`) and $BIGSPARSE_PAGE (e.g. `chapters/core_law`) set, and copies
`data/` next to the HTML, so the page links `../data/chapters/core_law/<name>.csv`.
Run by hand (neither set), the CSV goes to `_build/figure-data/<name>.csv`.

The CSV is a tidy table, one row per drawn point, with the columns `COLUMNS`: `panel`
(axes index) with its `title`, `xlabel`, `ylabel`, `xscale`, `yscale` and the visible range
`xmin`, `xmax`, `ymin`, `ymax`; `artist` (one
curve or point set in the panel) with its `kind` (`line`, `points`, `hline`, `vline`,
`mesh`), `series` (the legend label, empty for none) and `color`; and `x`, `y`, `z` (`z`
only for a colour `mesh`, whose `x`, `y` are the cell centres).
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bigsparse_lib.errors import InputError

DATA_ENV, PAGE_ENV, SCALE_ENV = "BIGSPARSE_FIGURE_DATA", "BIGSPARSE_PAGE", "BIGSPARSE_SCALE"
DEFAULT_DIR = Path("_build") / "figure-data"
COLUMNS = ("panel", "title", "xlabel", "ylabel", "xscale", "yscale", "xmin", "xmax", "ymin", "ymax",
           "artist", "kind", "series", "color", "x", "y", "z")
KINDS = ("line", "points", "hline", "vline", "mesh")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def _label(artist) -> str:
    label = artist.get_label() or ""
    return "" if label.startswith("_") else label  # matplotlib's "_child3": no legend entry


def figure_data(fig) -> pd.DataFrame:
    """What `fig` draws, as a tidy table (`COLUMNS`): lines, scatter points, reference lines, colour meshes.

    Text annotations and colour bars are not data and are left out.
    """
    from matplotlib.collections import PathCollection, QuadMesh
    from matplotlib.colors import to_hex

    rows = []
    panels = [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]
    for i, ax in enumerate(panels):
        meta = {"panel": i, "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
                **dict(zip(("xmin", "xmax"), map(float, ax.get_xlim()))),
                **dict(zip(("ymin", "ymax"), map(float, ax.get_ylim())))}

        def add(kind, artist, x, y, z=None, color=None):
            x, y = np.broadcast_arrays(np.asarray(x, float).ravel(), np.asarray(y, float).ravel())
            z = np.full(x.shape, np.nan) if z is None else np.asarray(z, float).ravel()
            rows.append(pd.DataFrame({**meta, "artist": len(rows), "kind": kind, "series": _label(artist),
                                      "color": "" if color is None else to_hex(color), "x": x, "y": y, "z": z}))

        for line in ax.get_lines():
            transform, (x, y) = line.get_transform(), np.asarray(line.get_data(), dtype=float)
            if transform == ax.get_xaxis_transform():    # axvline: x in data, y spans the axes
                add("vline", line, x[:1], np.nan, color=line.get_color())
            elif transform == ax.get_yaxis_transform():  # axhline: y in data, x spans the axes
                add("hline", line, np.nan, y[:1], color=line.get_color())
            else:
                kind = "points" if line.get_linestyle() in ("None", "", " ") else "line"
                add(kind, line, x, y, color=line.get_color())
        for coll in ax.collections:
            if isinstance(coll, QuadMesh):
                corners = np.asarray(coll.get_coordinates(), float)  # (ny+1, nx+1, 2) cell corners
                centre = lambda a: (a[:-1, :-1] + a[1:, 1:] + a[:-1, 1:] + a[1:, :-1]) / 4  # noqa: E731
                if ax.get_xscale() == "log" and ax.get_yscale() == "log":  # the centre a log axis shows
                    cx, cy = np.exp(centre(np.log(corners[..., 0]))), np.exp(centre(np.log(corners[..., 1])))
                else:
                    cx, cy = centre(corners[..., 0]), centre(corners[..., 1])
                add("mesh", coll, cx, cy, np.ma.filled(np.ma.asarray(coll.get_array(), float), np.nan))
            elif isinstance(coll, PathCollection) and len(coll.get_offsets()):
                xy = np.asarray(coll.get_offsets(), float)
                colors = coll.get_facecolors()
                add("points", coll, xy[:, 0], xy[:, 1], color=colors[0] if len(colors) else None)
    if not rows:
        raise InputError("figure: the figure draws no lines, points or meshes; nothing to write")
    return pd.concat(rows, ignore_index=True)[list(COLUMNS)]


def _links(name: str) -> tuple[Path, str, str]:
    """(where the CSV is written, the link from the page to it, the chapter) for figure `name`."""
    page = os.environ.get(PAGE_ENV, "")
    base = os.environ.get(DATA_ENV)
    if base and page:
        target = Path(base) / page / f"{name}.csv"
        href = "../" * page.count("/") + f"data/{page}/{name}.csv"  # _build/html/data/<page>/<name>.csv
    else:
        target = DEFAULT_DIR / f"{name}.csv"
        href = target.as_posix()
    return target, href, page


def caption_html(name: str, paper: str, caption: str, href: str, page: str, scale: str) -> str:
    """The block under a figure: the paper figure, the caption, the CSV and the two commands."""
    e = html.escape
    recompute = f"bigsparse book --scale {scale} --only {page} --no-html" if page else ""
    return (
        f'<div class="bigsparse-figure" data-figure="{e(name)}">'
        f"<p><strong>Paper: {e(paper)}.</strong> {e(caption)}</p>"
        f'<p>Data: <a class="bigsparse-figure-data" href="{e(href)}" download>{e(name)}.csv</a>. '
        f"Redraw it from the data: <code>bigsparse figure {e(name)}.csv</code>"
        + (f"; recompute the data: <code>{e(recompute)}</code>" if recompute else "")
        + ".</p></div>"
    )


def publish(fig, name: str, *, paper: str, caption: str = "") -> None:
    """Show `fig` with its caption, and write its data to `<name>.csv` (`csv_path(name)`).

    One call per figure, in place of `plt.show()`:

        figures.publish(fig, "fig3-vit-loss-vs-data", paper="Fig. 3", caption="ViT/JFT: ...")

    `name` (lower-case letters, digits, `-`, `_`) names the CSV and must be unique in the
    chapter; `paper` names what the figure reproduces ("Fig. 2", "Table 2 as a curve", or
    "no figure in the paper: ..."). The figure is closed afterwards, so the notebook shows
    it once. It returns nothing, so that as a cell's last line it adds no output. See the
    module docstring for where the CSV goes and what it holds.
    """
    import matplotlib.pyplot as plt
    from IPython.display import HTML, display

    if not _NAME.fullmatch(name):
        raise InputError(f"figure name must be lower-case letters, digits, '-' or '_', got {name!r}")
    data = figure_data(fig)
    target, href, page = _links(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(target, index=False)
    display(fig)
    plt.close(fig)
    display(HTML(caption_html(name, paper, caption, href, page, os.environ.get(SCALE_ENV, "toy"))))


def csv_path(name: str) -> Path:
    """Where `publish(fig, name, ...)` writes the figure's CSV in this process (see the module docstring)."""
    return _links(name)[0]


def redraw(data: pd.DataFrame):
    """The figure back from `figure_data`'s table (the CSV): one panel per `panel`, same scales and labels."""
    import matplotlib.pyplot as plt

    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise InputError(f"figure data: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    bad = sorted(set(data["kind"]) - set(KINDS))
    if bad:
        row = int(data.index[data["kind"].isin(bad)][0])
        raise InputError(f"figure data: row {row + 2}, column kind: {bad[0]!r} is not one of {', '.join(KINDS)}")
    data = data.fillna({"series": "", "color": "", "title": "", "xlabel": "", "ylabel": ""})
    panels = sorted(data["panel"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.0), squeeze=False)
    for ax, p in zip(axes[0], panels):
        sub = data[data["panel"] == p]
        first = sub.iloc[0]
        for _, grp in sub.groupby("artist", sort=False):
            kind, label, color = grp["kind"].iloc[0], grp["series"].iloc[0] or None, grp["color"].iloc[0] or None
            if kind == "mesh":
                xs, ys = np.unique(grp["x"]), np.unique(grp["y"])
                z = grp.pivot_table(index="y", columns="x", values="z").reindex(index=ys, columns=xs)
                mesh = ax.pcolormesh(xs, ys, z.to_numpy(), shading="nearest", cmap="magma_r")
                fig.colorbar(mesh, ax=ax)
            elif kind == "hline":
                ax.axhline(grp["y"].iloc[0], color=color, ls="--", lw=1, label=label)
            elif kind == "vline":
                ax.axvline(grp["x"].iloc[0], color=color, ls=":", label=label)
            else:
                ax.plot(grp["x"], grp["y"], "o" if kind == "points" else "-", ms=4, color=color, label=label)
        ax.set(xscale=first["xscale"], yscale=first["yscale"], xlabel=first["xlabel"], ylabel=first["ylabel"],
               title=first["title"], xlim=(first["xmin"], first["xmax"]), ylim=(first["ymin"], first["ymax"]))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
