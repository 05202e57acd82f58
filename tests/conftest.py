"""Shared fixtures: a tiny experiment (8 runs of a few steps) for sweep, CLI and execution tests.

Everything here is sized to run in well under a second per sweep on a shared 2-core machine:
hidden 8, batch 8, eval_batch 64, 6 steps logged every 3, seq_len [3, 5] x weight_scale
[0.5, 1.5] x 2 repeats = 8 runs in 2 batches (one per seq_len).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnlab.cli import app
from rnnlab.experiment.load import Experiment, parse_experiment

TINY: dict = {
    "name": "tiny",
    "seed": 0,
    "repeats": 2,
    "model": {"cell": "rnn", "activation": "tanh", "hidden": 8},
    "task": {"name": "recall", "batch": 8, "eval_batch": 64},
    "train": {"steps": 6, "log_every": 3, "optimizer": "adam", "lr": 0.01},
    "sweep": {"task.seq_len": [3, 5], "model.weight_scale": [0.5, 1.5]},
}


def _merge(base: dict, over: dict) -> dict:
    """``base`` updated by ``over``, recursively for nested mappings (``sweep`` is replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "sweep":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_data(**overrides) -> dict:
    """The tiny experiment as YAML data; keyword arguments are merged section by section, e.g.
    ``tiny_data(train={"steps": 0}, sweep={"task.seq_len": [3]})`` (``sweep`` replaces)."""
    return _merge(TINY, overrides)


def tiny_exp(**overrides) -> Experiment:
    """The tiny experiment, parsed (see :func:`tiny_data`)."""
    return parse_experiment(tiny_data(**overrides), source="tiny.yaml")


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def tiny_experiment(tmp_path):
    """``tiny_experiment(filename="tiny.yaml", **overrides)`` writes the tiny experiment YAML into
    ``tmp_path`` and returns its path."""

    def make(filename: str = "tiny.yaml", **overrides) -> Path:
        return write_yaml(tmp_path / filename, tiny_data(**overrides))

    return make


# ------------------------------------------------------------------------- the CLI in-process

runner = CliRunner()


def invoke(*args):
    """Run ``rnnlab ARGS`` in this process (typer's CliRunner); stdout and stderr kept apart."""
    return runner.invoke(app, [str(a) for a in args])


def ok(result):
    """Assert exit 0 (showing the streams otherwise) and return the result."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr,
                                   result.exception)
    return result


def tree_paths(node, prefix=()):
    """Every path (tuple of keys and indices) into a nested dict/list document, root first."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from tree_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from tree_paths(v, (*prefix, i))


def committed_runs(out: Path) -> int:
    """Runs committed in the results folder ``out`` so far, from the files' footers: the runs
    parts of the batches committed since the last finalize plus ``runs.parquet``. A file being
    replaced may be missed for a moment; a count never includes an uncommitted batch."""
    import pyarrow.parquet as pq

    files = sorted((out / "runs").glob("part-*.parquet")) + [out / "runs.parquet"]
    n = 0
    for f in files:
        try:
            n += pq.read_metadata(f).num_rows
        except OSError:
            pass
    return n


def load_script(path: Path, name: str):
    """Import a script that is not in a package (benchmarks/*.py) as module ``name``; yields it
    and forgets it afterwards (a generator for module-scoped fixtures)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(autouse=True)
def _keep_sigint_handler():
    """Restore SIGINT's handler after every test: a test that runs worker code in-process sets it
    to SIG_IGN, and a process started later by another test would inherit the ignored Ctrl-C
    (Python installs its handler only where SIGINT is not ignored at start)."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    if signal.getsignal(signal.SIGINT) is not before:
        signal.signal(signal.SIGINT, before)
