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

from rnnlab.experiment import load_experiment
from rnnlab.store import load_manifest
from rnnlab.sweep import check_folder, run_sweep
from rnnlab.sysinfo import stack_differences

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["vanishing", "spectrum", "clipping", "lstm", "truncation", "lyapunov"]


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
        rerun = (tmp_path / name / "summary.md").read_text()
        text = (committed / "summary.md").read_text()
        header = _cells(text.splitlines()[0])
        # columns added since the folder was committed (adding's acc_hs, acc_pascanu) follow the
        # committed ones; every committed column must be reproduced character for character
        assert _cells(rerun.splitlines()[0])[:len(header)] == header
        assert _select(rerun, len(header)) == text


def _cells(line: str) -> list[str]:
    """The cells of one markdown table line, padding kept (no cell here holds a '|')."""
    return line.strip()[1:-1].split("|")


def _select(markdown: str, n: int) -> str:
    """The markdown table with its first ``n`` columns only: each column's width depends on its
    own cells, so this is the text the table had without the later columns."""
    return "".join("|" + "|".join(_cells(line)[:n]) + "|\n" for line in markdown.splitlines())


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
