"""Figures of a results folder (rnnlab.plot and `rnnlab plot`).

Two small results folders are made once per module (a few seconds in all): a tanh RNN swept over
seq_len x weight_scale x clip threshold, and rnn against lstm. Every figure is checked through the
returned matplotlib Figure (axes labels, image shapes, lines) and the PNG it wrote.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rnnlab.cli import app
from rnnlab.errors import UserError
from rnnlab.experiment.load import parse_experiment
from rnnlab.plot import MISSING_HINT, output_path, plot
from rnnlab.run.sweep import run_sweep

matplotlib = pytest.importorskip("matplotlib")
image = pytest.importorskip("matplotlib.image")

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = {
    "seed": 0,
    "repeats": 2,
    "model": {"cell": "rnn", "activation": "tanh", "hidden": 8, "init": "orthogonal"},
    "task": {"name": "recall", "batch": 8, "eval_batch": 32},
    "train": {"steps": 4, "log_every": 2, "optimizer": "adam", "lr": 0.01},
}


def _sweep(root, name: str, sweep: dict):
    exp = parse_experiment({**BASE, "name": name, "sweep": sweep}, source=f"{name}.yaml")
    out = root / name
    run_sweep(exp, out, command=["test"])
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    # a clip threshold so small that clipping changes every update (but not the norms at step 0)
    scale = _sweep(root, "scale", {"task.seq_len": [4, 6], "model.weight_scale": [0.5, 1.5],
                                   "train.clip.threshold": [None, 0.001]})
    cells = _sweep(root, "cells", {"task.seq_len": [4, 6], "model.cell": ["rnn", "lstm"]})
    return {"scale": scale, "cells": cells}


@pytest.fixture(scope="module")
def made(folders, tmp_path_factory):
    """The figures most tests look at, drawn once: name -> (figure, notes, file)."""
    root = tmp_path_factory.mktemp("figures")
    scale = shutil.copytree(folders["scale"], root / "scale")
    cells = shutil.copytree(folders["cells"], root / "cells")
    todo = {
        "heatmap": (scale, "heatmap", {}),
        "heatmap_T": (scale, "heatmap", {"by": "seq_len"}),
        "decay": (scale, "decay", {}),
        "decay_last": (scale, "decay", {"step": 4, "where": ["seq_len=6"]}),
        "decay_cells": (cells, "decay", {"by": "cell"}),
        "success": (cells, "success", {}),
        "success_acc": (scale, "success", {"metric": "accuracy"}),
    }
    out = {}
    for name, (folder, kind, kw) in todo.items():
        notes = []
        file = root / f"{name}.png"
        fig = plot(folder, kind, None if name in ("heatmap", "decay", "success") else file,
                   note=notes.append, **kw)
        if name in ("heatmap", "decay", "success"):
            file = folder / f"{kind}.png"
        out[name] = (fig, notes, file)
    return out


@pytest.fixture
def scale_dir(folders, tmp_path):
    """A private copy of the scale folder (for tests that change it or write into it)."""
    return shutil.copytree(folders["scale"], tmp_path / "scale")


def panels(fig):
    """The data axes of a figure (not the colour bar), in drawing order."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def lines(ax, gid):
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def legend_texts(fig):
    """Every legend entry of a figure (figure legends and axes legends)."""
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    img = image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300


# ------------------------------------------------------------------------------------ heatmap


def test_heatmap_one_row_per_scale_one_column_per_step(made):
    fig, notes, file = made["heatmap"]
    assert file.name == "heatmap.png" and file.parent.name == "scale"      # default: FOLDER/
    assert_png(file)
    axes = panels(fig)
    # seq_len 4 and 6 are panels; the clip threshold changes nothing at step 0: not a panel
    assert [ax.get_title() for ax in axes] == ["seq_len = 4", "seq_len = 6"]
    assert any("threshold" in n and "does not change" in n for n in notes)
    for ax, T in zip(axes, (4, 6), strict=True):
        (image,) = ax.get_images()
        assert image.get_array().shape == (2, T)
        assert ax.get_xlabel() == f"time step t (loss at t = T = {T})"
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["0.5", "1.5"]
    assert axes[0].get_ylabel() == "weight_scale"
    (cbar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "log_{10}" in cbar.get_ylabel() and "mean over seeds" in cbar.get_ylabel()
    title = fig._suptitle.get_text()
    assert title.startswith("scale: log10 ||dE/ds_t|| at initialisation (step 0), mean of 2 seeds")


def test_heatmap_values_are_the_mean_of_log10_over_seeds(made, folders):
    from rnnlab.results.readers import load_grad_norms, load_runs

    fig = made["heatmap"][0]
    runs = load_runs(folders["scale"])
    sel = runs[(runs["task.seq_len"] == 6) & (runs["model.weight_scale"] == 1.5)
               & runs["train.clip.threshold"].isna()]
    assert len(sel) == 2
    g = load_grad_norms(folders["scale"], run_ids=sel["run_id"], step=0)
    want = g.assign(l=np.log10(g["ds"])).groupby("t")["l"].mean().to_numpy()
    image = panels(fig)[1].get_images()[0]
    np.testing.assert_allclose(np.asarray(image.get_array())[1], want)


def test_heatmap_by_seq_len_uses_the_lag_axis(made):
    axes = panels(made["heatmap_T"][0])
    assert [ax.get_title() for ax in axes] == ["weight_scale = 0.5", "weight_scale = 1.5"]
    for ax in axes:
        image = ax.get_images()[0]
        assert image.get_array().shape == (2, 6)                   # rows padded to the longest
        assert image.get_array().mask[0, 4:].all()                 # T = 4 has no lag 4, 5
        assert ax.get_xlabel().startswith("lag T − t")


def test_zero_and_nonfinite_norms_are_marked(scale_dir):
    from rnnlab.results.readers import load_runs

    runs = load_runs(scale_dir)
    first = runs[runs["train.clip.threshold"].isna() & (runs["task.seq_len"] == 4)
                 & (runs["model.weight_scale"] == 1.5)]["run_id"].iloc[0]
    part = next(p for p in (scale_dir / "grad_norms").glob("part-*.parquet")
                if first in pq.read_table(p).column("run_id").to_pylist())
    table = pq.read_table(part)
    df = table.to_pandas()
    rows = df.index[(df["run_id"] == first) & (df["step"] == 0)]
    df.loc[rows[0], "ds"] = 0.0                 # t = 1 underflowed
    df.loc[rows[1], "ds"] = np.nan              # t = 2 not finite
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), part)
    only = ["threshold=null", "seq_len=4"]
    fig = plot(scale_dir, "heatmap", where=only)
    labels = legend_texts(fig)
    assert any("ds = 0" in t and "underflow" in t for t in labels)
    assert any("not finite" in t for t in labels)
    (ax,) = panels(fig)
    (im,) = ax.get_images()
    a, lo, hi = np.asarray(im.get_array()), im.norm.vmin, im.norm.vmax
    assert a[1, 0] < lo and a[1, 1] > hi            # scale 1.5, t = 1: grey (under); t = 2: red
    assert np.all((a[0] >= lo) & (a[0] <= hi)) and np.all((a[1, 2:] >= lo) & (a[1, 2:] <= hi))
    assert tuple(im.cmap.get_under()) != tuple(im.cmap.get_over())
    fig = plot(scale_dir, "decay", where=only)
    assert any(lines(ax, "zero") for ax in panels(fig))
    assert any(lines(ax, "nonfinite") for ax in panels(fig))


# ------------------------------------------------------------------------------------ decay


def test_decay_one_line_per_scale_and_a_bound_that_holds(made):
    fig, _, file = made["decay"]
    assert_png(file)
    axes = panels(fig)
    assert len(axes) == 2
    for ax in axes:
        means, bounds = lines(ax, "mean"), lines(ax, "bound")
        assert len(means) == 2 and len(bounds) == 2
        assert all(b.get_linestyle() == "--" for b in bounds)
        assert ax.get_yscale() == "log"
        for m, b in zip(means, bounds, strict=True):
            assert m.get_color() == b.get_color()
            y, bound = np.asarray(m.get_ydata()), np.asarray(b.get_ydata())
            assert bound[0] == pytest.approx(y[0])                  # anchored at ds_T
            assert np.all(y <= bound * (1 + 1e-9))                  # Pascanu et al.'s bound
    assert axes[0].get_ylabel().endswith("(log scale)")
    assert axes[-1].get_xlabel().startswith("lag T − t")
    legend = legend_texts(fig)
    assert legend[:2] == ["0.5", "1.5"] and any("Pascanu" in t for t in legend)


def test_decay_bound_is_drawn_for_rnn_only(made):
    fig, notes, _ = made["decay_cells"]
    for ax in panels(fig):
        means = lines(ax, "mean")
        assert [m.get_label() for m in means] == ["lstm", "rnn"]
        (bound,) = lines(ax, "bound")
        assert bound.get_color() == means[1].get_color()
    assert any("lstm" in n for n in notes)


def test_decay_bound_only_where_the_weights_are_recorded(made, folders, tmp_path):
    fig, _, _ = made["decay_last"]                      # the last step: sigma_max of the end
    axes = panels(fig)
    assert all(len(lines(ax, "bound")) == 2 for ax in axes)
    # after training the clip threshold matters: one panel per threshold
    assert [ax.get_title() for ax in axes] == ["threshold = null", "threshold = 0.001"]
    notes = []
    fig = plot(folders["scale"], "decay", tmp_path / "d.png", step=2, note=notes.append,
               where=["seq_len=4", "threshold=null"])
    assert not any(lines(ax, "bound") for ax in panels(fig))
    assert any("no bound at step 2" in n for n in notes)


def test_sigmoid_bound_and_many_scales_get_a_colour_bar(tmp_path):
    scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0]
    exp = parse_experiment({**BASE, "name": "sig", "repeats": 1, "task": {**BASE["task"],
                            "seq_len": 6}, "train": {**BASE["train"], "steps": 0},
                            "sweep": {"model.activation": ["tanh", "sigmoid"],
                                      "model.weight_scale": scales}}, source="sig.yaml")
    run_sweep(exp, tmp_path / "sig", command=["test"])
    fig = plot(tmp_path / "sig", "decay", where=["activation=sigmoid"])
    (ax,) = panels(fig)
    means, bounds = lines(ax, "mean"), lines(ax, "bound")
    assert len(means) == len(bounds) == len(scales)
    for scale, m, b in zip(scales, means, bounds, strict=True):
        y = np.asarray(b.get_ydata())
        assert y[1] / y[0] == pytest.approx(scale / 4)           # gamma = 1/4, sigma = scale
        assert np.all(np.asarray(m.get_ydata()) <= y * (1 + 1e-9))
    (cbar,) = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert cbar.get_ylabel() == "weight_scale"
    assert any("γ = 0.25" in t for t in legend_texts(fig))


# ------------------------------------------------------------------------------------ success


def test_success_one_line_per_cell(made):
    fig, _, file = made["success"]
    assert_png(file)
    (ax,) = panels(fig)
    assert [ln.get_label() for ln in lines(ax, "mean")] == ["lstm", "rnn"]
    for ln in lines(ax, "mean"):
        assert list(ln.get_xdata()) == [4, 6]
        y = np.asarray(ln.get_ydata())
        assert np.all((y >= 0) & (y <= 1))
    bands = [c for c in ax.collections if c.get_gid() == "band"]
    assert len(bands) == 2                                # one Wilson band per line
    for band in bands:
        ys = band.get_paths()[0].vertices[:, 1]
        assert np.all((ys >= 0) & (ys <= 1)) and ys.max() > ys.min()
    lo, hi = ax.get_ylim()
    assert lo < 0 and 1 < hi < 1.1
    assert ax.get_ylabel() == "solved fraction"
    assert ax.get_xlabel() == "sequence length T (task.seq_len)"


def test_success_accuracy_and_facets(made):
    axes = panels(made["success_acc"][0])
    assert [ax.get_title() for ax in axes] == ["threshold = null", "threshold = 0.001"]
    assert all(len(lines(ax, "mean")) == 2 for ax in axes)
    assert axes[0].get_ylabel() == "held-out accuracy"


# ------------------------------------------------------------------------------------ files


def test_svg_and_unknown_formats(folders, tmp_path):
    plot(folders["cells"], "success", tmp_path / "s.svg")
    assert (tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(UserError, match="unknown image format"):
        plot(folders["cells"], "success", tmp_path / "s.jpgx")


def test_output_path_default():
    assert str(output_path("results/x", "decay")) == "results/x/decay.png"


# ------------------------------------------------------------------------------------ CLI


def test_cli_writes_the_file_and_prints_its_path_same_bytes(made, folders, tmp_path):
    out = tmp_path / "fig" / "d.png"
    res = runner.invoke(app, ["plot", str(folders["cells"]), "--kind", "decay", "--out", str(out),
                              "--by", "cell"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert res.stdout == f"{out}\n"
    assert "no bound for cell lstm" in res.stderr
    assert_png(out)
    data = out.read_bytes()
    assert data == made["decay_cells"][2].read_bytes()             # no timestamps: same bytes
    assert b"Software" not in data


@pytest.mark.parametrize("case", ["not_results", "empty", "unknown_by", "one_value", "no_norms",
                                  "bad_step", "bad_where", "unswept_by"])
def test_cli_errors_are_one_line_exit_2(case, scale_dir, tmp_path):
    args = {
        "not_results": [str(tmp_path)],
        "empty": [str(tmp_path / "empty")],
        "unknown_by": [str(scale_dir), "--by", "nope"],
        "one_value": [str(scale_dir), "--by", "weight_scale", "--where", "weight_scale=0.5"],
        "no_norms": [str(scale_dir), "--kind", "decay"],
        "bad_step": [str(scale_dir), "--step", "3"],
        "bad_where": [str(scale_dir), "--where", "weight_scale=7"],
        "unswept_by": [str(scale_dir), "--by", "model.hidden"],
    }[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    if case == "no_norms":
        shutil.rmtree(scale_dir / "grad_norms")
    res = runner.invoke(app, ["plot", *args])
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert res.stderr.startswith("rnnlab: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == ""
    expected = {"not_results": "not an rnnlab results folder", "empty": "is empty",
                "unknown_by": "no such swept key", "one_value": "more than one value",
                "no_norms": "is missing", "bad_step": "recorded steps: 0, 2, 4",
                "bad_where": "matches no run", "unswept_by": "is not swept"}[case]
    assert expected in res.stderr


def test_missing_matplotlib_is_a_clear_error(scale_dir, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UserError, match=r"^matplotlib is not installed: pip install "
                                        r"'rnnlab\[plot\]'$"):
        plot(scale_dir, "heatmap")
    res = runner.invoke(app, ["plot", str(scale_dir)])
    assert res.exit_code == 2 and res.stderr == f"rnnlab: error: {MISSING_HINT}\n"


def test_plotting_leaves_the_results_alone(made, folders):
    folder = made["success"][2].parent                  # the copy the figures were written into
    pd.testing.assert_frame_equal(pd.read_parquet(folders["cells"] / "runs.parquet"),
                                  pd.read_parquet(folder / "runs.parquet"))
    assert {p.name for p in folder.iterdir()} - {p.name for p in folders["cells"].iterdir()} \
        == {"success.png"}


def test_save_on_a_read_only_file_system_is_one_user_error(tmp_path, monkeypatch):
    """Writing the image and removing its temporary file both fail (EROFS): one UserError
    naming the file, not the cleanup's OSError."""
    import errno
    from pathlib import Path

    from matplotlib.figure import Figure

    from rnnlab.plot.figure import save

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    fig = Figure()
    monkeypatch.setattr(Figure, "savefig", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(UserError, match=r"cannot write .*x\.png: Read-only file system"):
        save(fig, tmp_path / "x.png")
