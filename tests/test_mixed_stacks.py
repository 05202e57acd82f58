"""A sweep resumed on another floating-point stack: refused by default, recorded with
--mixed-stacks, silent on the same stack and when nothing is left to train."""

import json

import pytest
from conftest import invoke, ok, tiny_data, write_yaml

from rnnlab.experiment.load import load_experiment
from rnnlab.results.readers import load_runs
from rnnlab.results.store import ResultsStore
from rnnlab.run.sweep import run_sweep


def partial(tmp_path, monkeypatch, batches: int = 2):
    """The tiny experiment (8 runs, batches of 2) swept into a folder until ``batches`` batches
    were committed, as if interrupted: (experiment file, folder, committed run ids)."""
    file = write_yaml(tmp_path / "t.yaml", tiny_data())
    out = tmp_path / "out"
    real = ResultsStore.write_batch
    calls = []

    def write(self, *args, **kw):
        if len(calls) == batches:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, *args, **kw)
    with monkeypatch.context() as m:
        m.setattr(ResultsStore, "write_batch", write)
        report = run_sweep(load_experiment(file), out, max_batch=2)
    assert report.outcome.interrupted
    return file, out, set(load_runs(out)["run_id"])


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("first, then", [(None, "Prescott"), ("Prescott", None)])
def test_a_resume_on_another_stack_is_refused_then_recorded_with_mixed_stacks(
        tmp_path, monkeypatch, first, then):
    def stack(coretype):
        if coretype is None:
            monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
        else:
            monkeypatch.setenv("OPENBLAS_CORETYPE", coretype)

    stack(first)
    file, out, done = partial(tmp_path, monkeypatch)
    assert len(done) == 4
    before = (out / "manifest.json").read_bytes()

    stack(then)
    args = ["sweep", file, "--out", out, "--no-progress", "--max-batch", "2"]
    res = invoke(*args)
    assert res.exit_code == 2, (res.stderr, res.exception)
    line, = res.stderr.strip().splitlines()
    assert line.startswith(f"rnnlab: error: {out} was made on another floating-point stack")
    assert "OPENBLAS_CORETYPE" in line and "4 missing run(s)" in line
    assert "--out" in line and "--mixed-stacks" in line
    assert (out / "manifest.json").read_bytes() == before
    assert set(load_runs(out)["run_id"]) == done

    res = ok(invoke(*args, "--mixed-stacks"))
    assert "--mixed-stacks: its 4 missing run(s) train on this stack" in res.stderr
    m = manifest(out)
    entry, = m["other_fp_stacks"]
    assert set(entry["runs"]) == set(load_runs(out)["run_id"]) - done
    assert entry["fp_stack"]["env"].get("OPENBLAS_CORETYPE") == then
    assert m["fp_stack"]["env"].get("OPENBLAS_CORETYPE") == first

    # nothing left to train: never refused, silent, the manifest as it was
    stack(first)
    after = (out / "manifest.json").read_bytes()
    for coretype in (first, then):
        stack(coretype)
        res = ok(invoke(*args))
        assert "floating-point" not in res.stderr and "--mixed-stacks" not in res.stderr
        assert (out / "manifest.json").read_bytes() == after

    stack(first)
    res = ok(invoke("report", out))
    assert "mixes 2 floating-point stacks: 4 run(s) were trained on another" in res.stderr
    assert "OPENBLAS_CORETYPE" in res.stderr


def test_a_resume_on_the_same_stack_is_silent_and_leaves_the_manifest(tmp_path, monkeypatch):
    file, out, done = partial(tmp_path, monkeypatch)
    before = (out / "manifest.json").read_bytes()
    res = ok(invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "2"))
    assert "floating-point" not in res.stderr and "--mixed-stacks" not in res.stderr
    assert (out / "manifest.json").read_bytes() == before
    assert "other_fp_stacks" not in manifest(out)
    assert "floating-point" not in ok(invoke("report", out)).stderr


def test_an_interrupted_mixed_resume_records_only_the_runs_it_committed(tmp_path,
                                                                        monkeypatch):
    """Killed after recording the runs it was to train, a mixed sweep's record names runs that
    are not in the folder; the next sweep on the first stack trains them and removes them from
    the record."""
    file, out, done = partial(tmp_path, monkeypatch)
    exp = load_experiment(file)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    real = ResultsStore.write_batch
    with monkeypatch.context() as m:
        m.setattr(ResultsStore, "write_batch",
                  lambda self, *a, **k: (real(self, *a, **k), exec("raise KeyboardInterrupt")))
        assert run_sweep(exp, out, max_batch=2, mixed_stacks=True).outcome.interrupted
    entry, = manifest(out)["other_fp_stacks"]
    mixed = set(load_runs(out)["run_id"]) - done
    assert len(mixed) == 2 and set(entry["runs"]) == mixed        # the committed batch only
    # a record left by a kill before that pruning names runs not in the folder
    store_manifest = manifest(out)
    store_manifest["other_fp_stacks"][0]["runs"] = sorted(set(exp_ids(exp)) - done)
    (out / "manifest.json").write_text(json.dumps(store_manifest))
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    run_sweep(exp, out, max_batch=2)
    entry, = manifest(out)["other_fp_stacks"]
    assert set(entry["runs"]) == mixed


def exp_ids(exp):
    return [r.run_id for r in exp.runs()]
