"""The committed quick result tables reproduce exactly (the numbers, not only the shape).

results/<name>-quick/summary.md was made by ``python scripts/reproduce.py --quick``; rerunning
each quick variant here must give the same table, character for character (4 significant
digits). A change in the numerics shows up here first: regenerate with the script and say why in
the commit.
"""

from pathlib import Path

import pytest

from rnnlab.experiment import load_experiment
from rnnlab.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["vanishing", "spectrum", "clipping", "lstm", "truncation"]


@pytest.mark.parametrize("name", NAMES)
def test_quick_variant_reproduces_its_committed_table(name, tmp_path):
    committed = ROOT / "results" / f"{name}-quick" / "summary.md"
    assert committed.exists(), f"missing {committed}: run python scripts/reproduce.py --quick"
    exp = load_experiment(ROOT / "experiments" / f"{name}.yaml", profile="quick")
    report = run_sweep(exp, tmp_path / name)
    assert report.outcome.failed == 0
    assert (tmp_path / name / "summary.md").read_text() == committed.read_text()


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_has_a_committed_full_table(name):
    table = ROOT / "results" / name / "summary.md"
    assert table.exists() and table.read_text().count("\n") > 2
