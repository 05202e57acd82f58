"""The committed reference results: their claims hold, on the committed tables and on a rerun.

Two tiers (docs/reproducibility.md):

* on the floating-point stack recorded in a committed folder's manifest (same NumPy SIMD level,
  BLAS kernel, versions), rerunning its quick variant gives the same table, character for
  character;
* on any other stack, the outcomes of training are other draws of the same random variables, and
  what must hold are the experiment's claims: the rerun is checked by claims, not digits.

A change in the numerics shows up here first: regenerate with ``python scripts/reproduce.py``
(``--quick`` for the quick variants) and say why in the commit.
"""

from pathlib import Path

import pytest

from rnnlab.analysis.summarize import render
from rnnlab.experiment.check import check_folder, claims_table, table_file
from rnnlab.experiment.load import load_experiment
from rnnlab.results.readers import load_manifest
from rnnlab.results.sysinfo import stack_differences
from rnnlab.run.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["vanishing", "spectrum", "clipping", "lstm", "truncation", "lyapunov", "limits",
         "limits-lstm"]


def _failures(results) -> list[str]:
    return [r.line() for r in results if not r.holds]


@pytest.mark.rounding
@pytest.mark.parametrize("name", NAMES)
def test_quick_variant_rerun_here_keeps_every_claim(name, tmp_path):
    exp = load_experiment(ROOT / "experiments" / f"{name}.yaml", profile="quick")
    assert exp.claims, f"experiments/{name}.yaml: the quick profile states no claims"
    report = run_sweep(exp, tmp_path / name)
    assert report.outcome.failed == 0
    results = check_folder(tmp_path / name)
    assert results and not _failures(results), _failures(results)

    committed = ROOT / "results" / f"{name}-quick"
    diffs = stack_differences(load_manifest(committed).get("fp_stack"))
    if not diffs:   # the exact tier: same stack, same digits
        assert (tmp_path / name / "summary.md").read_text() == \
            (committed / "summary.md").read_text()
        for table in ("budget", "limit"):           # the limit map's tables, where committed
            if (committed / table_file(table)).exists():
                assert render(claims_table(tmp_path / name, table), "csv") == \
                    (committed / table_file(table)).read_text()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("quick", [False, True])
def test_committed_folder_keeps_every_claim_of_its_experiment(name, quick):
    folder = ROOT / "results" / (f"{name}-quick" if quick else name)
    assert (folder / "summary.md").exists(), f"missing {folder}: run scripts/reproduce.py"
    results = check_folder(folder, file=ROOT / "experiments" / f"{name}.yaml",
                           profile="quick" if quick else None)
    assert results and not _failures(results), _failures(results)


@pytest.mark.parametrize("name", NAMES)
def test_committed_manifest_records_the_stack(name):
    manifest = load_manifest(ROOT / "results" / name)
    stack = manifest["fp_stack"]
    assert stack["numpy_simd"] and stack["blas"] and "cpu" in manifest


def test_the_script_trains_on_the_engine_it_is_given(tmp_path):
    """``scripts/reproduce.py --engine compiled`` runs every experiment on the kernel (its
    manifest records the kernel as part of the stack) and checks the claims; a folder elsewhere
    than results/ leaves results/ alone."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if k != "RNNLAB_ENGINE"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--quick", "--only", "spectrum",
         "--engine", "compiled", "--workers", "1", "--root", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "spectrum: 30 runs in " in proc.stdout and "3 of 3 claim(s) hold" in proc.stdout
    manifest = json.loads((tmp_path / "spectrum-quick" / "manifest.json").read_text())
    assert manifest["fp_stack"]["engine"]["name"].startswith("numba ")
