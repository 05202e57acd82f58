"""Claims: parsing at load time, evaluation on a summary table, `rnnlab check`."""

import math

import pandas as pd
import pytest
from conftest import invoke, ok, tiny_data, write_yaml

from rnnlab.errors import UserError
from rnnlab.experiment.claims import ClaimError, evaluate
from rnnlab.experiment.load import parse_experiment
from rnnlab.experiment.schema import Claim

TABLE = pd.DataFrame({
    "task.seq_len": [2, 8, 20],
    "model.cell": ["rnn", "rnn", "lstm"],
    "solved": [1.0, 0.8, 0.0],
    "solved_lo": [0.72, 0.49, 0.0],
    "solved_hi": [1.0, 0.94, 0.28],
    "decay": [-0.2, -0.19, math.nan],
    "bound": [0.0, 0.0, math.nan],
})


def check(*claims, table=TABLE):
    return evaluate([Claim(**c) for c in claims], lambda kind, step: table, "x.yaml")


def test_a_true_and_a_false_claim_with_their_observed_values():
    good, bad = check(
        {"says": "short is solved", "where": "seq_len <= 8", "expect": "solved_lo >= 0.4"},
        {"says": "all solved", "expect": "solved >= 0.9"},
    )
    assert good.holds and good.rows == 2
    assert "seq_len=2" in good.observed and "solved_lo=0.72" in good.observed
    assert not bad.holds and bad.rows == 3
    # the rows that break an "all" claim are listed first
    assert bad.observed.startswith("seq_len=8,cell=rnn: solved=0.8")
    assert bad.line().startswith("FAIL  all solved  [solved >= 0.9; ")


def test_dotted_names_strings_functions_and_quantifiers():
    a, b, c, d = check(
        {"says": "a", "where": "model.cell == 'lstm'", "expect": "solved_hi < 0.3"},
        {"says": "b", "expect": "solved >= 0.9", "holds": "any"},
        {"says": "c", "expect": "solved > 1", "holds": "none"},
        {"says": "d", "where": "cell in ('rnn',)", "expect": "abs(decay - -0.2) < 0.02 and "
                                                            "max(decay, bound) <= 0"},
    )
    assert a.holds and b.holds and c.holds and d.holds and d.rows == 2


def test_missing_values_never_satisfy_a_comparison():
    (r,) = check({"says": "bound", "expect": "decay <= bound"})
    assert not r.holds                      # the lstm row has no bound
    (r,) = check({"says": "bound", "expect": "isnan(bound) or decay <= bound"})
    assert r.holds


def test_a_claim_that_selects_no_row_does_not_hold():
    (r,) = check({"says": "nothing", "where": "seq_len > 100", "expect": "solved == 1"})
    assert not r.holds and r.observed == "no row matches" and r.rows == 0


@pytest.mark.parametrize(("claim", "key", "why"), [
    ({"says": "s", "expect": "solved >="}, "claims[0].expect", "not a valid expression"),
    ({"says": "s", "expect": "__import__('os')"}, "claims[0].expect", "Call is not allowed"),
    ({"says": "s", "expect": "solved.__class__ == 1"}, "claims[0].expect", "a column"),
    ({"says": "s", "expect": "[x for x in y]"}, "claims[0].expect", "ListComp"),
    ({"says": "s", "expect": "solvd > 0"}, "claims[0].expect", "a column of the summary"),
    ({"says": "s", "where": "sq_len < 3", "expect": "solved > 0"}, "claims[0].where",
     "a column of the summary"),
])
def test_malformed_claims_name_the_file_and_the_claim(claim, key, why):
    with pytest.raises(ClaimError) as info:
        check(claim)
    msg = str(info.value)
    assert msg.startswith(f"x.yaml: {key}: got ") and why in msg and "\n" not in msg


def test_an_ambiguous_short_name_is_an_error():
    table = TABLE.assign(**{"train.seq_len": [1, 2, 3]})
    with pytest.raises(ClaimError, match="a column of the summary"):
        check({"says": "s", "expect": "seq_len > 0"}, table=table)


def test_claims_are_parsed_when_the_experiment_is_loaded():
    data = tiny_data(claims=[{"says": "s", "expect": "solved >="}])
    with pytest.raises(UserError, match=r"^tiny.yaml: claims\[0\].expect: got 'solved >='"):
        parse_experiment(data, source="tiny.yaml")
    data = tiny_data(claims=[{"says": "s", "expect": "solved > 0", "hold": "all"}])
    with pytest.raises(UserError, match=r"claims\.0\.hold"):
        parse_experiment(data, source="tiny.yaml")


def test_a_profile_replaces_the_claims_and_they_reach_the_manifest_record():
    data = tiny_data(claims=[{"says": "base", "expect": "n > 0"}],
                     profiles={"quick": {"claims": [{"says": "quick", "expect": "n > 1"}]}})
    assert [c.says for c in parse_experiment(data).claims] == ["base"]
    quick = parse_experiment(data, profile="quick")
    assert [c.says for c in quick.claims] == ["quick"]
    assert quick.to_dict()["claims"][0]["expect"] == "n > 1"
    bad = tiny_data(profiles={"quick": {"claims": [{"says": "q", "expect": "n >"}]}})
    with pytest.raises(UserError, match=r"profiles.quick.claims\[0\].expect"):
        parse_experiment(bad, source="tiny.yaml", profile="quick")


def test_claims_do_not_change_the_fingerprint():
    plain = parse_experiment(tiny_data())
    claimed = parse_experiment(tiny_data(claims=[{"says": "s", "expect": "n > 0"}]))
    assert plain.fingerprint() == claimed.fingerprint()


def test_check_command_exit_status_follows_the_claims(tmp_path):
    claims = [{"says": "every cell ran two seeds", "expect": "n == 2"},
              {"says": "the bound holds at initialisation", "expect": "decay <= bound + 1e-9",
               "where": "weight_scale <= 1"}]
    path = write_yaml(tmp_path / "c.yaml", tiny_data(claims=claims))
    out = tmp_path / "out"
    ok(invoke("sweep", path, "--out", out, "--no-progress"))
    res = ok(invoke("check", out))
    assert res.stdout.count("PASS") == 2 and "2 of 2 claim(s) hold" in res.stderr

    failing = write_yaml(tmp_path / "f.yaml", tiny_data(claims=[{"says": "x", "expect": "n == 3"}]))
    res = invoke("check", out, "--file", failing)
    assert res.exit_code == 1 and res.stdout.startswith("FAIL  x  [n == 3; ")

    broken = write_yaml(tmp_path / "b.yaml", tiny_data(claims=[{"says": "x", "expect": "m > 0"}]))
    res = invoke("check", out, "--file", broken)
    assert res.exit_code == 2 and "b.yaml: claims[0].expect: got 'm'" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


# ---------------------------------------------------------------- names checked before training

@pytest.mark.parametrize(("claim", "key", "name"), [
    ({"says": "s", "expect": "nosuchcol > 1"}, "claims[0].expect", "nosuchcol"),
    ({"says": "s", "where": "nosuchcol > 1", "expect": "n > 0"}, "claims[0].where", "nosuchcol"),
    ({"says": "s", "expect": "acc_hs > 0.5"}, "claims[0].expect", "acc_hs"),       # recall
    ({"says": "s", "expect": "lambda1 < 0"}, "claims[0].expect", "lambda1"),       # no Lyapunov
    ({"says": "s", "where": "hidden == 8", "expect": "n > 0"}, "claims[0].where", "hidden"),
    ({"says": "s", "table": "budget", "expect": "budget > 0 and nosuchcol"},
     "claims[0].expect", "nosuchcol"),
    ({"says": "s", "table": "limit", "expect": "seq_len > 0"}, "claims[0].expect", "seq_len"),
])
def test_a_name_the_table_will_not_have_is_refused_at_load(claim, key, name):
    with pytest.raises(ClaimError) as info:
        parse_experiment(tiny_data(claims=[claim]), source="tiny.yaml")
    msg = str(info.value)
    assert msg.startswith(f"tiny.yaml: {key}: got {name!r}; allowed: a column of the ")
    assert "\n" not in msg


def test_the_columns_follow_the_sweep_the_task_and_the_analysis():
    # the criteria of adding, the Lyapunov columns, a swept key by its last part
    claims = [{"says": "a", "expect": "acc_hs_lo >= 0 and lr > 0"},
              {"says": "b", "expect": "lambda1_hi > -10 and decay_gap < 10"},
              {"says": "c", "table": "budget", "expect": "solved >= 0", "where": "lr > 0"},
              {"says": "d", "table": "limit", "expect": "horizon_0 >= 0", "where": "lr > 0"}]
    data = tiny_data(task={"name": "adding"}, train={"lyapunov": {"enabled": True}},
                     sweep={"task.seq_len": [3, 5], "train.lr": [0.01, 0.1]}, claims=claims)
    assert len(parse_experiment(data).claims) == 4
    # a limit map needs task.seq_len swept
    data = tiny_data(sweep={"train.lr": [0.01, 0.1]},
                     claims=[{"says": "s", "table": "limit", "expect": "limit > 2"}])
    with pytest.raises(ClaimError, match=r"^x: claims\[0\].table: got 'limit'; allowed: summary, "
                       r"or budget and limit when task.seq_len is swept.*task.seq_len is not"):
        parse_experiment(data, source="x")


def test_a_key_the_sweep_does_not_vary_is_named_and_a_near_miss_suggested():
    data = tiny_data(claims=[{"says": "s", "where": "seq_len <= 3", "expect": "solved >= 0"}],
                     sweep={"model.weight_scale": [0.5, 1.0]})
    with pytest.raises(ClaimError, match=r"got 'seq_len'.*\(task.seq_len is not swept"):
        parse_experiment(data)
    data = tiny_data(claims=[{"says": "s", "expect": "solvd > 0"}])
    with pytest.raises(ClaimError, match=r"\(did you mean solved\?\)$"):
        parse_experiment(data)


def test_claims_that_overrides_leave_without_a_column_are_set_aside():
    """--set/--sweep may pin or change a swept key a claim reads: the claim is set aside (not
    checked on that folder, not recorded), not an error; a claim wrong in the file itself is an
    error with overrides too."""
    claims = [{"says": "s", "where": "seq_len <= 3", "expect": "solved >= 0"},
              {"says": "t", "expect": "solved >= 0"}]
    data = tiny_data(claims=claims)
    assert len(parse_experiment(data).claims) == 2
    exp = parse_experiment(data, sets=["task.seq_len=4"])
    assert [c.says for c in exp.claims] == ["t"]
    assert exp.set_aside == [("claims[0]", "task.seq_len is not swept, so no table has a "
                                           "column for it")]
    assert parse_experiment(data, sets=["train.lr=0.1"]).set_aside == []
    bad = tiny_data(claims=[{"says": "s", "expect": "solvd > 0"}])
    with pytest.raises(ClaimError, match="solvd"):
        parse_experiment(bad, sets=["train.lr=0.1"])


def test_a_profiles_claims_are_checked_against_its_own_table():
    data = tiny_data(profiles={"quick": {"task.seq_len": 4,
                                         "claims": [{"says": "q", "expect": "seq_len > 0"}]}})
    with pytest.raises(ClaimError, match=r"^tiny.yaml: profiles.quick.claims\[0\].expect: got "
                       r"'seq_len'"):
        parse_experiment(data, source="tiny.yaml", profile="quick")
    # without claims of its own the profile keeps the file's, named as such
    data = tiny_data(claims=[{"says": "s", "expect": "weight_scale > 0"}],
                     profiles={"quick": {"model.weight_scale": 1.0}})
    with pytest.raises(ClaimError, match=r"^tiny.yaml: claims\[0\].expect: got 'weight_scale'"):
        parse_experiment(data, source="tiny.yaml", profile="quick")


def test_validate_and_sweep_refuse_an_unknown_column_before_training(tmp_path):
    path = write_yaml(tmp_path / "c.yaml",
                      tiny_data(claims=[{"says": "x", "expect": "nosuchcol > 1"}]))
    for args in (["validate", path], ["sweep", path, "--out", tmp_path / "out", "--no-progress"]):
        res = invoke(*args)
        assert res.exit_code == 2, res.stderr
        assert f"{path}: claims[0].expect: got 'nosuchcol'; allowed: a column of the summary" \
            in res.stderr
        assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "out").exists()


def test_check_names_the_manifest_and_where_its_claims_came_from(tmp_path):
    import json

    path = write_yaml(tmp_path / "c.yaml", tiny_data(claims=[{"says": "x", "expect": "n > 0"}]))
    out = tmp_path / "out"
    ok(invoke("sweep", path, "--out", out, "--no-progress"))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["experiment"]["claims"][0]["expect"] = "nosuchcol > 1"   # an older or edited record
    (out / "manifest.json").write_text(json.dumps(manifest))
    res = invoke("check", out)
    assert res.exit_code == 2
    assert (f"{out / 'manifest.json'} (claims of {path}): experiment.claims[0].expect: got "
            "'nosuchcol'") in res.stderr


def test_check_refuses_a_profile_without_a_file(tmp_path):
    data = tiny_data(claims=[{"says": "x", "expect": "n > 0"}],
                     profiles={"quick": {"claims": [{"says": "q", "expect": "n > 2"}]}})
    path = write_yaml(tmp_path / "c.yaml", data)
    out = tmp_path / "out"
    ok(invoke("sweep", path, "--out", out, "--no-progress"))
    res = invoke("check", out, "--profile", "quick")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"rnnlab: error: {out}: --profile: got 'quick'; allowed: a "
                                 "profile only with --file FILE")
    assert res.stderr.count("\n") == 1
    res = invoke("check", out, "--file", path, "--profile", "quick")
    assert res.exit_code == 1 and res.stdout.startswith("FAIL  q  [n > 2")


@pytest.mark.parametrize("overrides", [
    {},                                                          # recall, no analysis
    {"train": {"lyapunov": {"enabled": True}, "steps": 3},       # adding beside recall, Lyapunov
     "sweep": {"task.name": ["recall", "adding"], "task.seq_len": [3, 5]}},
])
def test_the_predicted_columns_are_those_of_a_real_sweep(tmp_path, overrides):
    from rnnlab.analysis.limits import limits_of
    from rnnlab.analysis.summarize import summary_of
    from rnnlab.experiment.claims import table_columns
    from rnnlab.run.sweep import run_sweep

    exp = parse_experiment(tiny_data(**overrides))
    run_sweep(exp, tmp_path)
    configs = [r.config for r in exp.runs()]
    budget, limit = limits_of(tmp_path)
    for table, real in (("summary", summary_of(tmp_path)), ("budget", budget), ("limit", limit)):
        assert table_columns(table, exp.swept_keys, configs) == list(real.columns), table


def test_a_claims_step_must_be_one_the_runs_log():
    """Gradient norms exist only at logged steps (0, every log_every, the last): a claim at
    another step is refused when the experiment is loaded, naming the logged ones."""
    claim = {"says": "s", "expect": "decay < 0", "step": 15}
    data = tiny_data(train={"steps": 20, "log_every": 10}, claims=[claim])
    with pytest.raises(ClaimError, match=r"claims\[0\].step: got 15; allowed: a step the runs "
                                         r"log: 0, 10, 20 \(train.steps 20, train.log_every 10\)"):
        parse_experiment(data)
    for step in (0, 10, 20):
        parse_experiment(tiny_data(train={"steps": 20, "log_every": 10},
                                   claims=[{**claim, "step": step}]))
    parse_experiment(tiny_data(train={"steps": 25, "log_every": 10},
                               claims=[{**claim, "step": 25}]))       # the last step is logged
