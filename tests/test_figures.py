"""Each figure reproducible on its own (issue 15): `figures.publish` writes what the figure draws as CSV,
captions it, and `bigsparse figure` redraws it from the CSV alone."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bigsparse_lib import figures, paper, plots  # noqa: E402
from bigsparse_lib.cli import main  # noqa: E402
from bigsparse_lib.errors import InputError  # noqa: E402


def _figure():
    fig, axes = plt.subplots(1, 2)
    axes[0].plot([1, 10, 100], [3.0, 2.0, 1.5], "o-", color="#ff0000", label="S = 0.5")
    axes[0].plot([1, 100], [2.5, 1.0], color="#00ff00")  # no legend entry
    axes[0].axhline(1.25, color="k", label="floor")
    axes[0].axvline(7.0, color="gray")
    axes[0].set(xscale="log", xlabel="N", ylabel="L", title="left")
    axes[1].scatter([0.1, 0.2], [5.0, 6.0], color="#0000ff", label="pts")
    mesh = axes[1].pcolormesh(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0]), np.array([[0.1, 0.2, 0.3],
                                                                                           [0.4, 0.5, 0.6]]),
                              shading="nearest")
    fig.colorbar(mesh, ax=axes[1])
    return fig


def test_figure_data_is_what_the_figure_draws():
    data = figures.figure_data(_figure())
    assert tuple(data.columns) == figures.COLUMNS
    left = data[data["panel"] == 0]
    line = left[left["series"] == "S = 0.5"]
    assert line["kind"].unique().tolist() == ["line"] and line["x"].tolist() == [1, 10, 100]
    assert line["y"].tolist() == [3.0, 2.0, 1.5] and line["color"].iloc[0] == "#ff0000"
    assert left.loc[left["kind"] == "hline", "y"].tolist() == [1.25]
    assert left.loc[left["kind"] == "vline", "x"].tolist() == [7.0]
    assert (left["xscale"] == "log").all() and (left["title"] == "left").all()
    right = data[data["panel"] == 1]  # the colour bar is not a panel
    assert set(data["panel"]) == {0, 1}
    pts = right[right["kind"] == "points"]
    assert pts[["x", "y"]].to_numpy().tolist() == [[0.1, 5.0], [0.2, 6.0]]
    mesh = right[right["kind"] == "mesh"].sort_values(["y", "x"])
    assert np.allclose(mesh["x"], [1, 2, 3, 1, 2, 3]) and np.allclose(mesh["y"], [10, 10, 10, 20, 20, 20])
    assert np.allclose(mesh["z"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # two unlabelled curves stay two artists
    assert left["artist"].nunique() == 4


def test_publish_writes_the_csv_where_the_build_copies_it_and_links_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(figures.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(figures.PAGE_ENV, "chapters/core_law")
    monkeypatch.setenv(figures.SCALE_ENV, "smoke")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a[0]))
    fig = plots.loss_vs_nnz_by_data(_t5_like(), c=1.0)
    assert figures.publish(fig, "fig2", paper="Fig. 2", caption="T5 <released>") is None  # no cell output
    path = figures.csv_path("fig2")
    assert path == tmp_path / "data" / "chapters" / "core_law" / "fig2.csv"
    data = pd.read_csv(path)
    assert len(data) == 6 and set(data["kind"]) == {"line"}
    assert shown[0] is fig
    caption = shown[1].data
    assert 'href="../data/chapters/core_law/fig2.csv"' in caption and "Paper: Fig. 2." in caption
    assert "T5 &lt;released&gt;" in caption  # escaped
    assert "bigsparse figure fig2.csv" in caption
    assert "bigsparse book --scale smoke --only chapters/core_law --no-html" in caption
    with pytest.raises(InputError, match="figure name"):
        figures.publish(plt.figure(), "Fig 2", paper="x")


def _t5_like():
    return pd.DataFrame({"sparsity": [0.0, 0.0, 0.5, 0.5, 0.0, 0.5], "nnz": [1e6, 2e6, 1e6, 2e6, 1e6, 1e6],
                         "data": [1e9, 1e9, 1e9, 1e9, 2e9, 2e9], "loss": [3.0, 2.8, 2.9, 2.7, 2.7, 2.6],
                         "family": "t5"})


def test_redraw_from_the_csv_gives_the_same_data(tmp_path, capsys):
    source = _figure()
    csv = tmp_path / "f.csv"
    figures.figure_data(source).to_csv(csv, index=False)
    assert main(["figure", str(csv), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 1000
    again = figures.figure_data(figures.redraw(pd.read_csv(csv)))
    first = figures.figure_data(source)
    for kind in ("line", "points", "hline", "vline", "mesh"):
        a, b = first[first["kind"] == kind], again[again["kind"] == kind]
        assert np.allclose(a[["x", "y"]].fillna(-1).to_numpy(), b[["x", "y"]].fillna(-1).to_numpy()), kind
    assert again.groupby("panel")["xscale"].first().tolist() == ["log", "linear"]
    assert np.allclose(again[["xmin", "xmax", "ymin", "ymax"]].to_numpy(), first[["xmin", "xmax", "ymin", "ymax"]].to_numpy())


def test_figure_command_rejects_bad_input(tmp_path, capsys):
    assert main(["figure", str(tmp_path / "none.csv")]) == 2
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"panel": [0], "x": [1]}).to_csv(bad, index=False)
    assert main(["figure", str(bad)]) == 2
    assert "missing column(s)" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    data = figures.figure_data(_figure())
    data.loc[3, "kind"] = "bar"
    data.to_csv(wrong, index=False)
    assert main(["figure", str(wrong)]) == 2
    assert "row 5, column kind" in capsys.readouterr().err


def test_gmp_vs_acdc_draws_a_line_per_size_and_method_at_any_number_of_sizes():
    """Table 6 at toy has two sizes (four lines); the chapter's inline plot once ran out of markers
    there. Each line carries its own (S, ppl) points, and a third size still draws."""
    rows = [{"N": N, "S": S, "ours: GMP ppl": 10.0 + k + S, "ours: AC/DC ppl": 10.5 + k + S}
            for k, N in enumerate((6_000, 24_000, 96_000)) for S in (0.875, 0.5, 0.75)]
    fig = plots.gmp_vs_acdc(pd.DataFrame(rows))
    lines = {l.get_label(): l for l in fig.axes[0].get_lines()}
    assert sorted(lines) == sorted(f"{m}, N = {N:,}" for N in (6_000, 24_000, 96_000) for m in ("GMP", "AC/DC"))
    acdc = lines["AC/DC, N = 24,000"]
    np.testing.assert_allclose(acdc.get_xdata(), [0.5, 0.75, 0.875])  # drawn in order of S
    np.testing.assert_allclose(acdc.get_ydata(), [12.0, 12.25, 12.375])
    assert len({l.get_marker() for l in fig.axes[0].get_lines()}) == 3  # one marker per size
