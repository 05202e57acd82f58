"""Tests of rnnlab.experiment.load and rnnlab.experiment.schema: schema, sweeps, overrides,
identities, errors."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import yaml
from conftest import tree_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.errors import ConfigError, UserError
from rnnlab.experiment.identity import canonical_json, run_id
from rnnlab.experiment.load import load_experiment, parse_experiment
from rnnlab.experiment.schema import ClipConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig

VALID = {
    "name": "demo-1",
    "description": "a small sweep",
    "seed": 3,
    "repeats": 2,
    "model": {"cell": "lstm", "hidden": 16, "weight_scale": 0.9},
    "task": {"name": "copy", "seq_len": 20, "symbols": 8, "copy_len": 5},
    "train": {"steps": 50, "optimizer": "momentum", "lr": 0.1, "clip": {"threshold": 1.0}},
    "sweep": {
        "task.seq_len": [10, 20],
        "zip": {"model.hidden": [8, 16, 32], "train.lr": {"logspace": [-3, -1, 3]}},
    },
    "profiles": {
        "quick": {"repeats": 1, "train.steps": 5, "sweep": {"task.seq_len": [2, 3, 4]}},
    },
}


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def parse(data, **kw):
    return parse_experiment(copy.deepcopy(data), source="exp.yaml", **kw)


def minimal(**extra):
    return {"name": "x", **extra}


# --------------------------------------------------------------------------- valid files


def test_valid_file_round_trip(tmp_path):
    exp = load_experiment(write(tmp_path, VALID))
    assert exp.name == "demo-1" and exp.source == str(tmp_path / "exp.yaml")
    assert exp.model.cell == "lstm" and exp.task.copy_len == 5 and exp.train.clip.threshold == 1.0
    assert exp.swept_keys == ["task.seq_len", "model.hidden", "train.lr"]
    assert exp.axes[1].values == [(8, 0.001), (16, 0.01), (32, 0.1)]
    assert exp.grid_size == 6 and len(exp.runs()) == 12
    manifest = json.loads(json.dumps(exp.to_dict()))
    assert manifest["fingerprint"] == exp.fingerprint() and manifest["runs"] == 12
    # The resolved experiment written back as a file gives the same runs.
    again = {k: manifest[k] for k in ("name", "seed", "repeats", "model", "task", "train")}
    again["sweep"] = {
        "task.seq_len": [v[0] for v in manifest["axes"][0]["values"]],
        "zip": {
            k: [v[i] for v in manifest["axes"][1]["values"]]
            for i, k in enumerate(manifest["axes"][1]["keys"])
        },
    }
    exp2 = load_experiment(write(tmp_path, again, "again.yaml"))
    assert [r.run_id for r in exp2.runs()] == [r.run_id for r in exp.runs()]
    assert exp2.fingerprint() == exp.fingerprint()


def test_defaults():
    exp = parse(minimal())
    m, t, tr = exp.model, exp.task, exp.train
    assert (exp.description, exp.seed, exp.repeats, exp.axes) == ("", 0, 1, [])
    assert (m.cell, m.activation, m.hidden, m.init, m.weight_scale) == (
        "rnn",
        "tanh",
        32,
        "orthogonal",
        1.0,
    )
    assert (m.bias, m.forget_bias, m.output, m.dtype) == (True, 1.0, None, "float64")
    assert (t.name, t.seq_len, t.batch, t.eval_batch) == ("recall", 10, 32, 1000)
    assert (t.symbols, t.noise, t.placement, t.input_size, t.copy_len) == (None,) * 5
    assert (tr.steps, tr.optimizer, tr.lr, tr.momentum, tr.nesterov) == (
        500,
        "adam",
        0.01,
        0.9,
        False,
    )
    assert (tr.beta1, tr.beta2, tr.eps, tr.tbptt, tr.loss_at, tr.log_every) == (
        0.9,
        0.999,
        1e-8,
        None,
        None,
        10,
    )
    assert (tr.clip.mode, tr.clip.threshold, tr.clip.threshold_or_inf) == (
        "norm",
        None,
        float("inf"),
    )
    [run] = exp.runs()
    assert run.seed == 0 and run.repeat == 0 and run.swept == {}
    assert run.config.model == m and run.config.to_dict()["seed"] == 0


def test_yaml_reads_exponent_floats(tmp_path):
    text = "name: x\ntrain: {lr: 1e-3, eps: 1E-9}\nsweep: {train.lr: [1e-2, 3e-2]}\n"
    exp = load_experiment(write(tmp_path, text))
    assert exp.train.lr == 0.001 and exp.train.eps == 1e-9
    assert exp.axes[0].values == [(0.01,), (0.03,)]


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"linspace": [0, 1, 5]}, [0.0, 0.25, 0.5, 0.75, 1.0]),
        ({"linspace": [2, 2, 1]}, [2.0]),
        ({"logspace": [-3, 0, 4]}, [0.001, 0.01, 0.1, 1.0]),
        ({"range": [0, 10, 3]}, [0, 3, 6, 9]),
        ({"range": [5, 1, -2]}, [5, 3]),
        ({"range": [1, 4]}, [1, 2, 3]),
    ],
)
def test_range_forms_on_float_key(form, expected):
    exp = parse(minimal(sweep={"model.weight_scale": form}))
    values = [v for (v,) in exp.axes[0].values]
    assert values == expected and all(isinstance(v, float) for v in values)


def test_range_forms_on_int_key():
    exp = parse(
        minimal(
            sweep={
                "model.hidden": {"linspace": [10, 40, 4]},
                "task.seq_len": {"logspace": [1, 2, 2]},
                "task.batch": {"range": [1, 3]},
            }
        )
    )
    assert [a.values for a in exp.axes] == [
        [(10,), (20,), (30,), (40,)],
        [(10,), (100,)],
        [(1,), (2,)],
    ]
    assert all(type(v) is int for a in exp.axes for (v,) in a.values)


def test_linspace_normalised_to_12_digits():
    exp = parse(
        minimal(
            sweep={
                "train.lr": {"linspace": [0.1, 0.3, 3]},
                "train.momentum": {"linspace": [0, 0.3, 4]},
            }
        )
    )
    assert exp.axes[0].values == [(0.1,), (0.2,), (0.3,)]
    assert exp.axes[1].values == [(0.0,), (0.1,), (0.2,), (0.3,)]
    same = parse(
        minimal(
            sweep={
                "train.lr": [0.1, 0.2, 0.30000000000000004],
                "train.momentum": [0.0, 0.1, 0.2, 0.3],
            }
        )
    )
    assert [r.run_id for r in same.runs()] == [r.run_id for r in exp.runs()]


def test_zip_mapping_and_list_of_mappings():
    one = parse(minimal(sweep={"zip": {"model.hidden": [4, 8], "train.lr": [0.1, 0.2]}}))
    assert one.axes[0].keys == ("model.hidden", "train.lr") and one.grid_size == 2
    assert [r.swept for r in one.runs()] == [
        {"model.hidden": 4, "train.lr": 0.1},
        {"model.hidden": 8, "train.lr": 0.2},
    ]
    two = parse(
        minimal(
            sweep={
                "zip": [
                    {"model.hidden": [4, 8], "train.lr": [0.1, 0.2]},
                    {"task.seq_len": [5, 6, 7], "task.batch": [1, 2, 3]},
                ]
            }
        )
    )
    assert two.grid_size == 6 and len(two.axes) == 2


def test_product_size_and_deterministic_order():
    data = minimal(
        repeats=3,
        seed=10,
        sweep={"task.seq_len": [5, 6], "model.cell": ["rnn", "lstm"], "train.lr": [0.1, 0.2, 0.3]},
    )
    exp = parse(data)
    runs = exp.runs()
    assert exp.grid_size == 12 and len(runs) == 36
    assert [
        (r.swept["task.seq_len"], r.swept["model.cell"], r.swept["train.lr"], r.repeat)
        for r in runs[:7]
    ] == [
        (5, "rnn", 0.1, 0),
        (5, "rnn", 0.1, 1),
        (5, "rnn", 0.1, 2),
        (5, "rnn", 0.2, 0),
        (5, "rnn", 0.2, 1),
        (5, "rnn", 0.2, 2),
        (5, "rnn", 0.3, 0),
    ]
    assert [r.seed for r in runs[:3]] == [10, 11, 12]
    assert list(runs[0].swept) == exp.swept_keys == ["task.seq_len", "model.cell", "train.lr"]
    assert len({r.run_id for r in runs}) == 36
    assert [r.run_id for r in parse(data).runs()] == [r.run_id for r in runs]
    assert runs[4].config.train.lr == 0.2 and runs[4].config.seed == 11
    assert all(len(r.run_id) == 12 and int(r.run_id, 16) >= 0 for r in runs)


def test_run_id_is_stable():
    config = RunConfig(
        model=ModelConfig(hidden=8),
        task=TaskConfig(name="adding", placement="halves"),
        train=TrainConfig(lr=0.003, clip=ClipConfig(threshold=1.0)),
        seed=7,
    )
    # Hard-coded: a change here means every stored run id changes (a results-format break).
    text = (
        '{"model":{"activation":"tanh","bias":true,"cell":"rnn","dtype":"float64",'
        '"forget_bias":1.0,"hidden":8,"init":"orthogonal","output":null,"weight_scale":1.0},'
        '"seed":7,"task":{"batch":32,"copy_len":null,"eval_batch":1000,"input_size":null,'
        '"name":"adding","noise":null,"placement":"halves","seq_len":10,"symbols":null},'
        '"train":{"beta1":0.9,"beta2":0.999,"clip":{"mode":"norm","threshold":1.0},"eps":1e-08,'
        '"log_every":10,"loss_at":null,"lr":0.003,"momentum":0.9,"nesterov":false,'
        '"optimizer":"adam","steps":500,"tbptt":null}}'
    )
    assert canonical_json(config.to_dict()) == text
    assert hashlib.sha256(text.encode()).hexdigest()[:12] == "3cc895419ee9"
    assert run_id(config) == "3cc895419ee9"
    assert canonical_json({"b": 0.30000000000000004, "a": [1, 1.0]}) == '{"a":[1,1.0],"b":0.3}'


#: Run ids of default configurations before the task options target, tolerance, scoring,
#: distractors and windows existed (seq_len 20, seed 0): they must not change. temporal_order's
#: was c665b663b59f with the ceil windows; its data changed, so its id must differ from that.
PINNED_IDS = {"recall": "b4a071fe97f6", "adding": "2fbf8d9d95d9", "copy": "bce14e8b3aec",
              "random": "f93312fc3042"}


@pytest.mark.parametrize("name", ["recall", "adding", "copy", "random", "temporal_order"])
def test_default_run_ids_are_pinned(name):
    config = RunConfig(model=ModelConfig(), task=TaskConfig(name=name, seq_len=20),
                       train=TrainConfig(), seed=0)
    dumped = config.to_dict()["task"]
    for option in ("target", "tolerance", "scoring", "distractors"):
        assert option not in dumped                      # left out while null
    if name == "temporal_order":
        assert dumped["windows"] is None                 # always dumped: the data changed
        assert run_id(config) != "c665b663b59f"
    else:
        assert "windows" not in dumped
        assert run_id(config) == PINNED_IDS[name]


def test_new_task_options_change_the_id_once_set():
    base = TaskConfig(name="adding", seq_len=20)
    ids = {run_id(RunConfig(model=ModelConfig(), task=t, train=TrainConfig(), seed=0))
           for t in (base, base.model_copy(update={"target": "mean"}),
                     base.model_copy(update={"tolerance": 0.08}),
                     TaskConfig(name="adding", seq_len=20, placement="pascanu"))}
    assert len(ids) == 4 and PINNED_IDS["adding"] in ids
    floor = TaskConfig(name="temporal_order", seq_len=20, windows="floor")
    ceil = TaskConfig(name="temporal_order", seq_len=20, windows="ceil")
    assert floor.model_dump()["windows"] == "floor" and ceil.model_dump()["windows"] == "ceil"


def test_int_and_float_give_the_same_id():
    a = parse(minimal(model={"weight_scale": 1}, train={"lr": 1}))
    b = parse(minimal(model={"weight_scale": 1.0}, train={"lr": 1.0}))
    assert a.runs()[0].run_id == b.runs()[0].run_id
    assert a.model.weight_scale == 1.0 and isinstance(a.model.weight_scale, float)


def test_set_overrides(tmp_path):
    path = write(tmp_path, VALID)
    exp = load_experiment(
        path,
        sets=[
            "model.hidden=128",
            "train.clip.threshold=null",
            "train.eps=1e-3",
            "model.output=softmax",
            "train={nesterov: true, tbptt: 4}",
            "description=other",
        ],
    )
    assert exp.train.clip.threshold is None and exp.train.clip.threshold_or_inf == float("inf")
    assert exp.train.nesterov is True and exp.train.tbptt == 4 and exp.model.output == "softmax"
    assert exp.train.eps == 0.001 and exp.description == "other"
    # model.hidden and train.lr were swept together: setting one pins it and leaves the other.
    assert exp.swept_keys == ["task.seq_len", "train.lr"]
    assert {r.config.model.hidden for r in exp.runs()} == {128}


def test_sweep_overrides():
    exp = parse(
        VALID,
        sweeps=[
            "task.seq_len=10,20,40",
            "train.lr=[0.5, 0.25]",
            "model.weight_scale={linspace: [0.5, 1.5, 3]}",
            "train.clip.threshold=null,1,2.5",
            "model.output=softmax",
        ],
    )
    assert exp.swept_keys == [
        "task.seq_len",
        "train.lr",
        "model.weight_scale",
        "train.clip.threshold",
        "model.output",
    ]
    vals = {a.keys[0]: [v for (v,) in a.values] for a in exp.axes}
    assert vals["task.seq_len"] == [10, 20, 40]  # replaced in place
    assert vals["train.lr"] == [0.5, 0.25]  # replaced the whole zip axis (model.hidden goes too)
    assert vals["model.weight_scale"] == [0.5, 1.0, 1.5]
    assert vals["train.clip.threshold"] == [None, 1.0, 2.5]
    assert exp.grid_size == 3 * 2 * 3 * 3


def test_sweep_then_set_is_pinned_and_sweep_after_set_wins():
    exp = parse(minimal(sweep={"task.seq_len": [1, 2]}), sets=["task.seq_len=7"])
    assert exp.axes == [] and exp.task.seq_len == 7
    exp = parse(minimal(), sets=["task.seq_len=7"], sweeps=["task.seq_len=3,4"])
    assert exp.swept_keys == ["task.seq_len"]


def test_cli_zip_sweep_and_runspec_hash():
    exp = parse(
        minimal(), sweeps=["zip={model.hidden: [4, 8], train.lr: {linspace: [0.1, 0.2, 2]}}"]
    )
    assert exp.axes[0].keys == ("model.hidden", "train.lr")
    assert exp.axes[0].values == [(4, 0.1), (8, 0.2)]
    runs = exp.runs()
    assert len(set(runs)) == 2 and runs[0] == exp.runs()[0]


def test_task_mismatch_inside_grid_blames_the_swept_key():
    data = minimal(task={"name": "temporal_order"}, sweep={"task.seq_len": [10, 5]})
    with pytest.raises(
        ConfigError, match=r"sweep\.task\.seq_len: got 5; allowed: an integer >= 10"
    ):
        parse(data)
    data = minimal(task={"seq_len": 5}, sweep={"task.name": ["recall", "temporal_order"]})
    with pytest.raises(ConfigError, match=r"sweep\.task\.name: got 'temporal_order'; allowed: a"):
        parse(data)


def test_int_and_float_in_one_axis_are_duplicates():
    with pytest.raises(ConfigError, match="distinct values"):
        parse(minimal(sweep={"model.weight_scale": [1, 1.0]}))


def test_profiles():
    exp = parse(VALID, profile="quick")
    assert exp.profile == "quick" and exp.repeats == 1 and exp.train.steps == 5
    assert exp.axes[0].values == [(2,), (3,), (4,)] and exp.grid_size == 9
    assert parse(VALID).train.steps == 50
    # order: file, profile, --set, --sweep
    exp = parse(VALID, profile="quick", sets=["train.steps=7"], sweeps=["task.seq_len=9"])
    assert exp.train.steps == 7 and exp.axes[0].values == [(9,)]


def test_shape_key_groups_stackable_runs():
    exp = parse(
        minimal(
            sweep={
                "train.lr": [0.1, 0.2],
                "model.weight_scale": [0.5, 1.0],
                "train.clip.threshold": [None, 1.0],
                "model.init": ["gaussian", "identity"],
            },
            repeats=2,
        )
    )
    assert len({r.config.shape_key() for r in exp.runs()}) == 1
    exp = parse(
        minimal(
            sweep={
                "model.hidden": [4, 8],
                "task.seq_len": [3, 4],
                "train.clip.mode": ["norm", "value"],
            }
        )
    )
    keys = [r.config.shape_key() for r in exp.runs()]
    assert len(set(keys)) == 8 and all(hash(k) is not None for k in keys)


def test_fingerprint():
    base = parse(VALID).fingerprint()
    assert parse({**VALID, "description": "other", "name": "renamed"}).fingerprint() == base
    # the base value of a swept key is used by no run
    assert parse({**VALID, "train": {**VALID["train"], "lr": 0.5}}).fingerprint() == base
    assert parse(VALID, sets=["train.lr=0.5"]).fingerprint() != base  # pins lr: new runs
    assert parse(VALID, sets=["model.weight_scale=0.8"]).fingerprint() != base
    assert parse(VALID, sets=["repeats=3"]).fingerprint() != base
    assert parse(VALID, sets=["seed=4"]).fingerprint() != base
    assert parse(VALID, sweeps=["task.seq_len=10,21"]).fingerprint() != base
    assert len(base) == 16


def test_large_grid_needs_yes():
    data = minimal(sweep={"model.hidden": {"range": [1, 31]}, "task.seq_len": [1, 2]}, repeats=3)
    with pytest.raises(ConfigError, match=r"180 runs \(60 grid points x 3 repeats\)"):
        parse(data, max_runs=100)
    assert len(parse(data, max_runs=100, yes=True).runs()) == 180
    assert parse(data, max_runs=180).grid_size == 60
    assert parse(data).grid_size == 60  # default max_runs is 10_000


# --------------------------------------------------------------------------- errors

# fmt: off
ERRORS = [
    # (data or file text, kwargs, file, key, value, allowed)
    (minimal(modle={}), {}, "exp.yaml", "modle", "{}", "did you mean model?"),
    (minimal(model={"hiden": 4}), {}, "exp.yaml", "model.hiden", "4", "did you mean model.hidden?"),
    (minimal(model={"hidden": "4"}), {}, "exp.yaml", "model.hidden", "'4'", "an integer >= 1"),
    (minimal(model={"hidden": 4.0}), {}, "exp.yaml", "model.hidden", "4.0", "an integer >= 1"),
    (minimal(model={"hidden": True}), {}, "exp.yaml", "model.hidden", "True", "an integer >= 1"),
    (minimal(model={"hidden": -3}), {}, "exp.yaml", "model.hidden", "-3", "an integer >= 1"),
    (minimal(train={"lr": "0.1"}), {}, "exp.yaml", "train.lr", "'0.1'", "a number > 0"),
    (minimal(train={"clip": {"threshold": 0}}), {}, "exp.yaml", "train.clip.threshold", "0",
     "a number > 0, or null"),
    (minimal(train={"clip": {"threshold": -1.5}}), {}, "exp.yaml", "train.clip.threshold", "-1.5",
     "a number > 0, or null"),
    (minimal(train={"momentum": 1}), {}, "exp.yaml", "train.momentum", "1", ">= 0 and < 1"),
    (minimal(task={"name": "sort"}), {}, "exp.yaml", "task.name", "'sort'",
     "one of recall, adding, copy, temporal_order, random"),
    (minimal(model={"cell": "esn"}), {}, "exp.yaml", "model.cell", "'esn'",
     "one of rnn, lstm, gru"),
    (minimal(train={"optimizer": "rmsprop"}), {}, "exp.yaml", "train.optimizer", "'rmsprop'",
     "one of sgd, momentum, adagrad, adam"),
    (minimal(task={"placement": "halves"}), {}, "exp.yaml", "task.placement", "'halves'",
     "null for task recall (it uses symbols, noise)"),
    (minimal(task={"name": "temporal_order", "symbols": 4}), {}, "exp.yaml", "task.symbols", "4",
     "null for task temporal_order"),
    (minimal(task={"name": "temporal_order", "seq_len": 5}), {}, "exp.yaml", "task.seq_len", "5",
     "an integer >= 10 for task temporal_order"),
    (minimal(task={"name": "adding", "target": "median"}), {}, "exp.yaml", "task.target",
     "'median'", "one of sum, mean, null"),
    (minimal(task={"name": "adding", "tolerance": 0}), {}, "exp.yaml", "task.tolerance", "0",
     "a number > 0, or null"),
    (minimal(task={"name": "adding", "placement": "pascanu", "seq_len": 9}), {}, "exp.yaml",
     "task.seq_len", "9", "an integer >= 10 for task adding with placement pascanu"),
    (minimal(task={"name": "temporal_order", "windows": "round"}), {}, "exp.yaml",
     "task.windows", "'round'", "one of floor, ceil, null"),
    (minimal(task={"name": "temporal_order", "distractors": 0}), {}, "exp.yaml",
     "task.distractors", "0", "an integer >= 1"),
    (minimal(task={"name": "copy", "scoring": "mean"}), {}, "exp.yaml", "task.scoring",
     "'mean'", "one of rnnlab, arjovsky, null"),
    (minimal(task={"windows": "floor"}), {}, "exp.yaml", "task.windows", "'floor'",
     "null for task recall (it uses symbols, noise)"),
    (minimal(task={"name": "adding", "tolerances": 0.1}), {}, "exp.yaml", "task.tolerances",
     "0.1", "did you mean task.tolerance?"),
    ({"seed": 1}, {}, "exp.yaml", "name", "nothing", "letters, digits"),
    ({"name": "a b"}, {}, "exp.yaml", "name", "'a b'", "letters, digits"),
    (minimal(seed=-1), {}, "exp.yaml", "seed", "-1", "an integer >= 0"),
    (minimal(model=[1]), {}, "exp.yaml", "model", "[1]", "a mapping with keys cell"),
    ([1, 2], {}, "exp.yaml", "(top level)", "[1, 2]", "a mapping with keys name"),
    (minimal(sweep={"model.hidden": [0]}), {}, "exp.yaml", "sweep.model.hidden", "0",
     "an integer >= 1"),
    (minimal(sweep={"model.hidden": []}), {}, "exp.yaml", "sweep.model.hidden", "[]",
     "a non-empty list"),
    (minimal(sweep={"model.hidden": {"range": [5, 5]}}), {}, "exp.yaml", "sweep.model.hidden",
     "{'range': [5, 5]}", "a non-empty list"),
    (minimal(sweep={"model.hidden": 4}), {}, "exp.yaml", "sweep.model.hidden", "4",
     "a non-empty list"),
    (minimal(sweep={"model.hidden": {"linspace": [1, 10, 3]}}), {}, "exp.yaml",
     "sweep.model.hidden", "5.5", "an integer >= 1"),
    (minimal(sweep={"train.lr": {"linspace": [1, 2]}}), {}, "exp.yaml", "sweep.train.lr.linspace",
     "[1, 2]", "[a, b, n]"),
    (minimal(sweep={"task.batch": {"range": [0, 5, 0]}}), {}, "exp.yaml",
     "sweep.task.batch.range", "[0, 5, 0]", "step not 0"),
    (minimal(sweep={"model.hiden": [1]}), {}, "exp.yaml", "sweep.model.hiden", "[1]",
     "did you mean model.hidden?"),
    (minimal(sweep={"seed": [1, 2]}), {}, "exp.yaml", "sweep.seed", "[1, 2]", "use repeats"),
    (minimal(sweep={"name": ["a"]}), {}, "exp.yaml", "sweep.name", "['a']", "cannot be swept"),
    (minimal(sweep={"train.lr": [0.1, 0.1]}), {}, "exp.yaml", "sweep.train.lr", "0.1",
     "distinct values"),
    (minimal(sweep={"zip": {"train.lr": [0.1, 0.2], "model.hidden": [1]}}), {}, "exp.yaml",
     "sweep.zip", "train.lr: 2 values, model.hidden: 1 values", "lists of equal length"),
    (minimal(sweep={"zip": {"train.lr": [0.1, 0.2]}, "train.lr": [1]}), {}, "exp.yaml",
     "sweep.train.lr", "a second axis", "each key in one axis only"),
    (minimal(sweep={"task.placement": ["halves", "anywhere"]}), {}, "exp.yaml",
     "sweep.task.placement", "'halves'", "null for task recall"),
    (minimal(task={"symbols": 5}, sweep={"task.name": ["recall", "adding"]}), {}, "exp.yaml",
     "sweep.task.name", "'adding'", "a task that uses symbols: recall, copy, random"),
    (minimal(sweep={"model.hidden": {"range": [1, 101]}, "task.seq_len": {"range": [1, 102]}}),
     {}, "exp.yaml", "sweep", "10100 runs", "at most 10000 runs (pass --yes"),
    (minimal(sweep={"model.hidden": {"range": [1, 10**6]}}), {}, "exp.yaml",
     "sweep.model.hidden.range", "999999 values", "at most 10000 values"),
    (minimal(repeats=11), {"max_runs": 10}, "exp.yaml", "sweep", "11 runs", "at most 10 runs"),
    (minimal(), {"sets": ["model.hidden=0"]}, "--set", "model.hidden", "0", "an integer >= 1"),
    (minimal(), {"sets": ["model.hiden=8"]}, "--set", "model.hiden", "8",
     "did you mean model.hidden?"),
    (minimal(), {"sets": ["model.hidden"]}, "--set", "model.hidden", "'model.hidden'",
     "KEY=VALUE"),
    (minimal(), {"sets": ["model.hidden=[1"]}, "--set", "model.hidden", "'[1'", "a YAML value"),
    (minimal(), {"sets": ["task.placement=halves"]}, "--set", "task.placement", "'halves'",
     "null for task recall"),
    (minimal(), {"sweeps": ["task.seq_len=1,0"]}, "--sweep", "task.seq_len", "0",
     "an integer >= 1"),
    (minimal(), {"sweeps": ["task.seq_len="]}, "--sweep", "task.seq_len", "[]",
     "a non-empty list"),
    (minimal(), {"sweeps": ["task.seq_len=1,,2"]}, "--sweep", "task.seq_len", "'1,,2'",
     "comma-separated values"),
    (minimal(), {"sweeps": ["task.seqlen=1,2"]}, "--sweep", "task.seqlen", "[1, 2]",
     "did you mean task.seq_len?"),
    (VALID, {"profile": "slow"}, "exp.yaml", "profile", "'slow'", "one of quick"),
    (minimal(), {"profile": "quick"}, "exp.yaml", "profile", "'quick'", "none"),
    (minimal(profiles={"quick": {"train.step": 1}}), {"profile": "quick"}, "exp.yaml",
     "profiles.quick.train.step", "1", "did you mean train.steps?"),
    (minimal(profiles={"quick": {"train.steps": -1}}), {"profile": "quick"}, "exp.yaml",
     "profiles.quick.train.steps", "-1", "an integer >= 0"),
    (minimal(profiles={"quick": {"sweep": {"train.lr": [0]}}}), {"profile": "quick"}, "exp.yaml",
     "profiles.quick.sweep.train.lr", "0", "a number > 0"),
    (minimal(profiles={"quick": 3}), {}, "exp.yaml", "profiles.quick", "3", "a mapping"),
    ("name: x\nmodel:\n  hidden: 3\n   cell: rnn\n", {}, "exp.yaml", "line 4", "'cell: rnn'",
     "valid YAML (mapping values are not allowed here)"),
    ("name: x\nseed: 1\nseed: 2\n", {}, "exp.yaml", "line 3", "'seed: 2'",
     "valid YAML (duplicate key 'seed')"),
    ("name: x\nmodel: [1, 2\n", {}, "exp.yaml", "line 2", "'model: [1, 2'", "valid YAML"),
    ("", {}, "exp.yaml", "(top level)", "None", "a mapping"),
]
# fmt: on


@pytest.mark.parametrize(("data", "kwargs", "file", "key", "value", "allowed"), ERRORS)
def test_errors_are_one_line(tmp_path, data, kwargs, file, key, value, allowed):
    path = write(tmp_path, data)
    with pytest.raises(UserError) as info:
        load_experiment(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    file_text = str(path) if file == "exp.yaml" else file
    assert msg.startswith(f"{file_text}: {key}: got {value}"), msg
    assert "; allowed: " in msg and allowed in msg, msg
    assert isinstance(info.value, ConfigError)


TOP = "a key of the top level (name, description, seed, repeats, model, task, train)"


@pytest.mark.parametrize(("key", "allowed", "hint"), [
    ("repets", f"{TOP}, a dotted key of model, task or train such as task.seq_len, sweep or "
     "claims", "did you mean repeats?"),
    ("sweeps", None, "did you mean sweep?"),
    ("claim", None, "did you mean claims?"),
    ("model.hiden", "a key of model: cell, activation, hidden,", "did you mean model.hidden?"),
])
def test_an_unknown_profile_key_lists_every_key_a_profile_accepts(tmp_path, key, allowed, hint):
    path = write(tmp_path, minimal(profiles={"quick": {key: 1}}))
    with pytest.raises(ConfigError) as info:
        load_experiment(path, profile="quick")
    msg = str(info.value)
    assert msg.startswith(f"{path}: profiles.quick.{key}: got 1; allowed: "), msg
    assert (allowed or "sweep or claims") in msg and msg.endswith(f"({hint})"), msg
    # what the list offers is accepted there
    for good in ({"repeats": 2}, {"description": "d"}, {"model": {"hidden": 4}},
                 {"task.seq_len": 4}, {"sweep": {"task.seq_len": [3, 4]}},
                 {"claims": [{"says": "s", "expect": "n > 0"}]}):
        load_experiment(write(tmp_path, minimal(profiles={"quick": good})), profile="quick")


def test_an_unknown_set_key_lists_the_dotted_keys_too():
    with pytest.raises(ConfigError) as info:
        parse(minimal(), sets=["foo=1"])
    assert str(info.value) == (f"--set: foo: got 1; allowed: {TOP} or a dotted key of model, "
                               "task or train such as task.seq_len")


@pytest.mark.parametrize(("profile", "key", "value"), [
    ({"repets": 1}, "profiles.slow.repets", "1"),
    ({"train.steps": -1}, "profiles.slow.train.steps", "-1"),
    ({"sweep": {"train.lr": [0]}}, "profiles.slow.sweep.train.lr", "0"),
    ({"claims": [{"says": "s", "expect": "nosuchcol > 0"}]}, "profiles.slow.claims[0].expect",
     "'nosuchcol'"),
    ({"claims": [{"says": "s", "expect": "n > 0", "table": "limit"}]},
     "profiles.slow.claims[0].table", "'limit'"),
])
def test_load_profiles_loads_each_profile_as_if_selected(tmp_path, profile, key, value):
    from rnnlab.experiment.load import load_profiles

    path = write(tmp_path, minimal(profiles={"quick": {"repeats": 2}, "slow": profile}))
    load_experiment(path)                                   # the file itself is fine
    with pytest.raises(ConfigError) as info:
        load_profiles(path)
    assert str(info.value).startswith(f"{path}: {key}: got {value}; allowed: ")
    fine = write(tmp_path, minimal(profiles={"quick": {"repeats": 2}}), "fine.yaml")
    assert {n: e.repeats for n, e in load_profiles(fine).items()} == {"quick": 2}


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: no such experiment file"):
        load_experiment(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- fuzzing

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(),
    st.floats(allow_nan=True),
    st.sampled_from(["rnn", "lstm", "adam", "halves", "recall", "copy", "", "x", "1e-3"]),
    st.text(max_size=5),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["linspace", "logspace", "range", "model.hidden", "train.lr", "zip", "x"]
            ),
            inner,
            max_size=2,
        ),
    ),
    max_leaves=8,
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "name",
            "seed",
            "repeats",
            "model",
            "hidden",
            "cell",
            "task.seq_len",
            "train.lr",
            "zip",
            "sweep",
            "profiles",
            "linspace",
            "range",
            "symbols",
            "placement",
            "threshold",
            "quick",
            "model.hidden",
            "seq_len",
            "clip",
        ]
    ),
    st.text(max_size=6),
    st.integers(0, 3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_parse_or_raise_user_error(data):
    doc = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(list(tree_paths(doc))))
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if action == "set" and path:
            parent[path[-1]] = data.draw(VALUES)
        elif action == "delete" and path:
            del parent[path[-1]]
        elif action == "add":
            target = parent[path[-1]] if path else doc
            if isinstance(target, dict):
                target[data.draw(KEYS)] = data.draw(VALUES)
    kwargs = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "profile": st.sampled_from(["quick", "nope"]),
                "sets": st.lists(
                    st.sampled_from(
                        [
                            "model.hidden=3",
                            "train.lr=x",
                            "task=1",
                            "=",
                            "train.clip.threshold=null",
                            "seed=1e3",
                        ]
                    ),
                    max_size=2,
                ),
                "sweeps": st.lists(
                    st.sampled_from(
                        [
                            "task.seq_len=1,2",
                            "zip={task.batch: [1]}",
                            "model.output=[]",
                            "train.lr={range: [1, 3]}",
                        ]
                    ),
                    max_size=2,
                ),
            },
        )
    )
    try:
        exp = parse_experiment(doc, **kwargs)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    runs = exp.runs()
    assert len(runs) == exp.grid_size * exp.repeats
    json.dumps(exp.to_dict())
