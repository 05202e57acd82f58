"""Claims checked on a results folder (``rnnlab check``): which claims, and on which tables.

The claims come from an experiment file or from the experiment recorded in the folder's
manifest; each is evaluated (:func:`rnnlab.experiment.claims.evaluate`) on the table it names,
recomputed from the folder's runs or, in a committed reference folder that keeps only its
tables, read from the table's file (:func:`table_file`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnlab.analysis.limits import limits_of
from rnnlab.analysis.summarize import summary_of
from rnnlab.errors import ConfigError, UserError
from rnnlab.experiment.claims import ClaimResult, evaluate
from rnnlab.experiment.load import load_experiment
from rnnlab.experiment.schema import Claim
from rnnlab.results.layout import RUNS
from rnnlab.results.readers import has_runs, load_manifest


def check_folder(out: Path, file: str | Path | None = None,
                 profile: str | None = None) -> list[ClaimResult]:
    """Evaluate the claims of a results folder (:mod:`rnnlab.experiment.claims`) on its summary
    table.

    The claims come from ``file`` (an experiment file, with ``profile``) when given, else from
    the resolved experiment recorded in the folder's manifest (a ``profile`` without ``file`` is
    a ConfigError: the manifest keeps the claims the sweep ran with, not the file's profiles).
    Returns ``ClaimResult``s; a malformed claim raises ``ClaimError`` naming the file and the
    claim (for the manifest's claims: the manifest, and the file and profile they came from).
    """
    out = Path(out)
    if file is not None:
        exp = load_experiment(file, profile=profile)
        claims, source, prefix = exp.claims, str(file), exp.claims_at
    else:
        if profile is not None:
            # the manifest records the claims of the experiment as it was swept (with its
            # profile, if any), not the file's profiles: there is nothing to apply a profile to
            raise ConfigError(str(out), "--profile", profile, "a profile only with --file FILE",
                              "without a file the claims are those the manifest recorded as the "
                              "sweep ran, which holds no profiles")
        recorded = load_manifest(out).get("experiment") or {}
        claims = [Claim.model_validate(c) for c in recorded.get("claims") or []]
        source, prefix = f"{out / 'manifest.json'}", "experiment.claims"
        if recorded.get("source"):
            swept = f" --profile {recorded['profile']}" if recorded.get("profile") else ""
            source += f" (claims of {recorded['source']}{swept})"
    return evaluate(claims, lambda table, step: claims_table(out, table, step), source, prefix)


def claims_table(out: Path, table: str = "summary", step: int | None = None) -> pd.DataFrame:
    """The table a claim is checked on, recomputed from the runs when the folder holds them,
    else read from the file a committed reference folder keeps (:func:`table_file`)."""
    if has_runs(out):
        if table == "summary":
            return summary_of(out, step=step)
        by_budget, by_setting = limits_of(out, gradients=table == "limit")
        return by_budget if table == "budget" else by_setting
    csv = out / table_file(table, step)
    if csv.exists():
        return pd.read_csv(csv, keep_default_na=False, na_values=[""])
    what = f"the {table} table" + (f" at step {step}" if step is not None else "")
    raise UserError(f"{out}: {RUNS} is missing, so {what} cannot be made; rerun the sweep")


def table_file(table: str = "summary", step: int | None = None) -> str:
    """The file name of a table in a committed folder: ``summary.csv``, ``summary-step-N.csv``
    for the summary at training step N, ``budget.csv`` and ``limit.csv`` for the limit map."""
    if table == "summary":
        return "summary.csv" if step is None else f"summary-step-{step}.csv"
    return f"{table}.csv"
