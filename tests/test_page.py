"""The results page: its content, and in a real browser (headless Chromium) that it runs clean.

The browser tests load a copy of the page with two test-only scripts added: one at the top of
``<head>`` that records console errors and uncaught exceptions, one at the end that, after the
page has drawn, sorts the table by a column and inspects every figure, then writes what it saw
into the DOM; ``chromium --headless --dump-dom`` prints that DOM. They are skipped, with the
reason, when no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import invoke, ok, tiny_exp

import rnnlab
from rnnlab.analysis.summarize import summary_of
from rnnlab.report.page import (
    MAX_POINTS,
    MAX_RUN_POINTS,
    MAX_RUN_STEPS,
    build_page,
    thin,
    write_page,
)
from rnnlab.run.sweep import run_sweep

pytest.importorskip("plotly")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "tiny"
    run_sweep(tiny_exp(description="a tiny sweep"), out)
    return out


def page_data(text: str) -> dict:
    m = re.search(r'<script id="rnnlab-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_page_is_self_contained_and_holds_the_folder(folder):
    from plotly.offline import get_plotlyjs

    text = build_page(folder)
    js = get_plotlyjs()
    assert f"<script>{js}</script>" in text                       # plotly.js inline, once
    rest = text.replace(js, "")
    assert "<script src" not in rest and "<link" not in rest and "http" not in rest
    assert "a tiny sweep" in text
    data = page_data(text)
    assert [f["id"] for f in data["figures"]] == ["heatmap", "decay", "success"]
    assert data["steps"] == ["0", "3", "6"]
    assert len(data["runs"]) == 8 and data["template"]
    body = text[text.index("<tbody>"):text.index("</tbody>")]
    assert body.count("<tr") == len(summary_of(folder))
    assert '<section id="claims"></section>' in text                 # no claims stated
    for word in ("numpy", "platform", "blas", "training time", "resolved experiment"):
        assert word in text, word
    assert "engine: the NumPy engine" in text and "engine: ," not in text


def test_claims_and_their_verdicts(tmp_path):
    out = tmp_path / "claimed"
    claims = [{"says": "two seeds per row", "expect": "n == 2"},
              {"says": "an impossible fraction", "where": "seq_len == 3",
               "expect": "solved_lo > 2"}]
    run_sweep(tiny_exp(claims=claims), out)
    text = build_page(out)
    section = text[text.index('<section id="claims">'):text.index('<section id="summary">')]
    assert "1 of 2 claim(s) hold" in section
    assert section.count('<tr class="pass">') == 1 and section.count('<tr class="fail">') == 1
    assert "two seeds per row" in section and "seq_len == 3" in section


def test_long_series_are_thinned_for_display_only():
    idx = thin(1000, MAX_POINTS)
    assert len(idx) <= MAX_POINTS and idx[0] == 0 and idx[-1] == 999
    assert list(thin(5, MAX_POINTS)) == [0, 1, 2, 3, 4]


def test_many_runs_get_fewer_points_per_curve():
    from rnnlab.report.page import MIN_RUN_POINTS, RUN_BUDGET, run_points

    assert run_points(10) == MAX_RUN_POINTS
    assert MIN_RUN_POINTS < run_points(100) < MAX_RUN_POINTS
    assert run_points(100) * 100 * MAX_RUN_STEPS * 3 <= RUN_BUDGET
    assert run_points(10**6) == MIN_RUN_POINTS


def test_long_runs_give_a_small_page(tmp_path):
    out = tmp_path / "long"
    run_sweep(tiny_exp(train={"log_every": 1, "steps": 30},
                       sweep={"task.seq_len": [600], "model.weight_scale": [0.5, 1.5]}), out)
    data = page_data(build_page(out))
    run = next(iter(data["runs"].values()))
    assert len(run["n"]) == MAX_RUN_STEPS and all(len(c["t"]) == MAX_RUN_POINTS
                                                  for c in run["n"])
    assert run["n"][0]["t"][0] == 1 and run["n"][-1]["t"][-1] == 600     # ends kept
    assert run["n"][0]["step"] == 0 and run["n"][-1]["step"] == 30
    heat = data["figures"][0]["steps"]["0"]["data"][0]
    assert len(heat["x"]) == MAX_POINTS and len(data["steps"]) <= 6
    from rnnlab.results.readers import load_grad_norms

    assert len(load_grad_norms(out)) == 4 * 31 * 600              # the stored data is whole


def test_cli_writes_the_page(folder, tmp_path):
    res = ok(invoke("report", folder, "--html", "--out", tmp_path / "p.html"))
    assert res.stdout.strip() == str(tmp_path / "p.html")
    assert (tmp_path / "p.html").read_text().startswith("<!DOCTYPE html>")
    bad = invoke("report", folder, "--html", "--out", tmp_path / "p.png")
    assert bad.exit_code == 2 and ".html" in bad.stderr
    bad = invoke("report", folder, "--html", "--format", "csv")
    assert bad.exit_code == 2 and "--html" in bad.stderr
    bad = invoke("report", folder, "--out", tmp_path / "p.html")
    assert bad.exit_code == 2 and "only with --html" in bad.stderr


def test_sweep_html_writes_the_page_in_the_folder(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    res = ok(invoke("sweep", tiny_experiment(), "--out", out, "--no-progress", "--html"))
    assert (out / "report.html").is_file()
    assert "report.html" in res.stderr


def test_without_plotly_one_line_and_nothing_trained(tiny_experiment, folder, tmp_path,
                                                     monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)           # import plotly -> ImportError
    res = invoke("report", folder, "--html", "--out", tmp_path / "p.html")
    assert res.exit_code == 2 and "pip install 'rnnlab[html]'" in res.stderr
    assert not (tmp_path / "p.html").exists()
    res = invoke("sweep", tiny_experiment(), "--out", tmp_path / "new", "--html")
    assert res.exit_code == 2 and "rnnlab[html]" in res.stderr
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------- in a browser
def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CAPTURE = """<script>
window.__errors = [];
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push(Array.prototype.map.call(arguments, String).join(" "));
    return original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    window.__errors.push("uncaught: " + e.message);
  });
  window.addEventListener("unhandledrejection", function (e) {
    window.__errors.push("rejection: " + e.reason);
  });
})();
</script>"""

PROBE = """<script>
setTimeout(function () {
  var out = {errors: window.__errors};
  var table = document.getElementById("summary-table");
  var rows = table.tBodies[0].rows;
  out.rows = rows.length;
  var buttons = table.querySelectorAll("button.sort");
  var col = -1;
  for (var i = 0; i < buttons.length; i++) if (buttons[i].textContent === "decay") col = i;
  function column() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      return parseFloat(r.cells[col].getAttribute("data-v"));
    });
  }
  out.before = column();
  buttons[col].click();
  out.ascending = column();
  buttons[col].click();
  out.descending = column();
  var filter = table.querySelectorAll("input.filter")[col];
  filter.value = ">0";
  filter.dispatchEvent(new Event("input"));
  out.filtered = Array.prototype.filter.call(rows, function (r) {
    return r.style.display !== "none";
  }).length;
  out.figures = {};
  document.querySelectorAll("div.figure").forEach(function (div) {
    out.figures[div.id] = {
      svg: div.querySelectorAll("svg.main-svg").length,
      traces: div.querySelectorAll("g.trace, g.hm").length,
      data: (div._fullData || []).length
    };
  });
  var step = document.getElementById("step");
  step.value = step.options[step.options.length - 1].value;
  step.dispatchEvent(new Event("change"));
  rows[rows.length - 1].click();
  out.picked = document.getElementById("run-select").value;
  out.picked_row = rows[rows.length - 1].getAttribute("data-run");
  setTimeout(function () {
    var heat = document.getElementById("fig-heatmap");
    out.heatmap_after_step = heat.querySelectorAll("g.hm").length;
    out.heatmap_title = (heat.layout && heat.layout.title && heat.layout.title.text) || "";
    out.errors = window.__errors;
    var pre = document.createElement("pre");
    pre.id = "probe";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 1000);
}, 1500);
</script>"""


def render_in_browser(page: Path, tmp_path: Path) -> dict:
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    text = page.read_text(encoding="utf-8")
    text = text.replace("<head>", "<head>" + CAPTURE, 1)
    text = text.replace("</body>", PROBE + "</body>", 1)
    probe = tmp_path / "probe.html"
    probe.write_text(text, encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path)}
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=20000", "--window-size=1280,2000", "--dump-dom",
           probe.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, (res.returncode, res.stderr[-2000:])
    import html

    return json.loads(html.unescape(m.group(1)))


def test_page_in_headless_chromium(folder, tmp_path):
    page = write_page(folder, tmp_path / "page.html")
    seen = render_in_browser(page, tmp_path)
    assert seen["errors"] == []
    assert seen["rows"] == len(summary_of(folder))
    assert seen["before"] != sorted(seen["before"])                  # sorting must change it
    assert seen["ascending"] == sorted(seen["before"])
    assert seen["descending"] == sorted(seen["before"], reverse=True)
    assert seen["filtered"] == sum(v > 0 for v in seen["before"])
    expected = {"fig-heatmap", "fig-decay", "fig-success", "run-curves", "run-clip",
                "run-norms"}
    assert set(seen["figures"]) == expected
    for name, fig in seen["figures"].items():
        assert fig["svg"] >= 1 and fig["traces"] >= 1 and fig["data"] >= 1, (name, fig)
    assert seen["heatmap_after_step"] >= 1 and "training step 6" in seen["heatmap_title"]
    assert seen["picked"] == seen["picked_row"] != ""


def test_page_of_exploded_runs_in_headless_chromium(tmp_path):
    out = tmp_path / "boom"
    run_sweep(tiny_exp(task={"name": "adding"}, model={"activation": "relu"},
                       train={"optimizer": "sgd", "lr": 10.0, "steps": 12,
                              "clip": {"mode": "norm", "threshold": None}},
                       sweep={"task.seq_len": [20, 30], "model.weight_scale": [1.0, 5.0]}), out)
    statuses = set(rnnlab.open(out).runs["status"])
    assert statuses - {"ok"}                      # some runs diverged or exploded
    seen = render_in_browser(write_page(out, tmp_path / "page.html"), tmp_path)
    assert seen["errors"] == [] and seen["rows"] == len(summary_of(out))
    for name, fig in seen["figures"].items():
        assert fig["svg"] >= 1 and fig["traces"] >= 1, (name, fig)


def test_lyapunov_figure_where_the_runs_stored_it(tmp_path):
    out = tmp_path / "lyap"
    run_sweep(tiny_exp(train={"lyapunov": {"enabled": True}}), out)
    page = write_page(out, tmp_path / "page.html")
    data = page_data(page.read_text())
    lyap = next(f for f in data["figures"] if f["id"] == "lyapunov")
    assert all(fig is not None for fig in lyap["steps"].values())
    seen = render_in_browser(page, tmp_path)
    assert seen["errors"] == [] and seen["figures"]["fig-lyapunov"]["traces"] >= 1
    folder_without = tmp_path / "plain"
    run_sweep(tiny_exp(), folder_without)
    ids = [f["id"] for f in page_data(build_page(folder_without))["figures"]]
    assert "lyapunov" not in ids
