"""The manifest knows the machine: CPU, NumPy's SIMD level, the BLAS kernel, rounding variables."""

import json
import os
import subprocess
import sys

from conftest import invoke, ok, tiny_data, write_yaml

from rnnlab.results.sysinfo import (
    ROUNDING_ENV,
    cpu_info,
    fp_stack,
    numpy_simd,
    stack_differences,
    stack_note,
    system_info,
)


def test_manifest_facts_are_recorded_and_json_ready():
    info = json.loads(json.dumps(system_info()))
    assert info["cpu"]["model"] and isinstance(info["cpu"]["flags"], list)
    stack = info["fp_stack"]
    assert stack["numpy_simd"] == numpy_simd() and stack["numpy_simd"]
    assert stack["blas"] and all(len(b.split()) == 3 for b in stack["blas"])   # lib version kernel
    assert info["blas_runtime"][0]["kernel"]
    if os.path.exists("/proc/cpuinfo"):
        flags = open("/proc/cpuinfo").read()
        assert ("avx2" in cpu_info()["flags"]) == (" avx2" in flags)


def test_rounding_variables_are_recorded(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "AVX512F")
    env = fp_stack()["env"]
    assert env == {"NPY_DISABLE_CPU_FEATURES": "AVX512F", "OPENBLAS_CORETYPE": "Haswell"}
    assert set(env) <= set(ROUNDING_ENV)


def test_the_stack_of_a_child_with_numpy_simd_disabled_differs():
    """NPY_DISABLE_CPU_FEATURES really switches NumPy's loops, and the manifest sees it."""
    here = fp_stack()
    found = [f for f in here["numpy_simd"][1:] if f.startswith(("X86_V3", "X86_V4", "AVX"))]
    if not found:
        return                            # nothing to disable on this CPU: nothing to compare
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found)}
    code = "import json; from rnnlab.results.sysinfo import fp_stack; print(json.dumps(fp_stack()))"
    child = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                      capture_output=True, text=True).stdout)
    diffs = stack_differences(child, here)
    assert any(d.startswith("numpy_simd:") for d in diffs)
    assert any(d.startswith("env:") for d in diffs)


def test_stack_note_is_one_line_and_silent_on_the_same_stack():
    assert stack_note({"fp_stack": fp_stack()}) is None
    other = {**fp_stack(), "blas": ["openblas 0.3.0 Prescott"]}
    note = stack_note({"fp_stack": other})
    assert note and "\n" not in note and "Prescott" in note and "claims" in note
    assert "does not record" in stack_note({})


def test_report_says_when_a_folder_comes_from_another_stack(tmp_path):
    path = write_yaml(tmp_path / "t.yaml", tiny_data(sweep={"task.seq_len": [3]}))
    out = tmp_path / "out"
    ok(invoke("sweep", path, "--out", out, "--no-progress"))
    assert "floating-point stack" not in ok(invoke("report", out)).stderr
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["fp_stack"]["blas"] = ["openblas 0.3.0 Prescott"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    res = ok(invoke("report", out))
    assert "another floating-point stack" in res.stderr and "Prescott" in res.stderr


def test_the_compiled_engine_is_part_of_the_stack(monkeypatch):
    from rnnlab.engine.select import numba_available

    assert fp_stack()["engine"] == {}                 # the NumPy engine adds nothing
    if not numba_available():
        return
    monkeypatch.setenv("RNNLAB_ENGINE", "compiled")
    engine = fp_stack()["engine"]
    assert engine["name"].startswith("numba ") and engine["flags"]["fastmath"] is False
    assert engine["contract"]               # the functions with fused multiply-adds, named
    assert any(d.startswith("engine:") for d in stack_differences({**fp_stack(), "engine": {}}))


def test_compiled_without_numba_records_the_numpy_engine_that_ran(tmp_path, monkeypatch):
    """--engine compiled without numba trains on the NumPy engine: the manifest records that
    engine (not the request), so report sees no other stack and compare no difference."""
    from rnnlab.engine import select

    monkeypatch.setattr(select, "numba_available", lambda: False)
    path = write_yaml(tmp_path / "t.yaml", tiny_data(sweep={"task.seq_len": [3]}))
    plain, asked = tmp_path / "plain", tmp_path / "asked"
    try:
        ok(invoke("sweep", path, "--out", plain, "--no-progress", "--engine", "numpy"))
        ok(invoke("sweep", path, "--out", asked, "--no-progress", "--engine", "compiled"))
    finally:
        select.set_engine(None)
    stack = json.loads((asked / "manifest.json").read_text())["fp_stack"]
    assert stack["engine"] == {} and "RNNLAB_ENGINE" not in stack["env"]
    assert stack == json.loads((plain / "manifest.json").read_text())["fp_stack"]
    assert "floating-point stack" not in ok(invoke("report", asked)).stderr
    res = ok(invoke("compare", plain, asked, "--format", "json"))
    keys = {d["key"] for d in json.loads(res.stdout)["manifest"]}
    assert not any(k.startswith("fp_stack") for k in keys), keys


def test_an_engine_request_in_an_older_manifest_is_no_difference():
    """Older manifests recorded RNNLAB_ENGINE in fp_stack.env; it changes no number."""
    from rnnlab.report.compare import manifest_differences

    here = fp_stack()
    old = {**here, "env": {**here["env"], "RNNLAB_ENGINE": "compiled"}}
    assert stack_differences(old, here) == []
    assert manifest_differences({"fp_stack": old}, {"fp_stack": here}) == []


def test_stack_differences_are_short():
    """The NumPy engine against a compiled kernel by name; two of a kind by what differs."""
    from rnnlab.results.sysinfo import stack_differences
    base = {"machine": "x", "numpy": "2", "numpy_simd": [], "blas": {"kernel": "Haswell",
            "version": "0.3"}, "engine": {}, "env": {}}
    kernel = {"name": "numba 0.68.1", "flags": {"cache": True}, "cpu": "znver4"}
    assert stack_differences(base, {**base, "engine": kernel}) == \
        ["engine: the NumPy engine -> numba 0.68.1 kernel"]
    other = {**base, "engine": {**kernel, "cpu": "skylake"},
             "blas": {"kernel": "SkylakeX", "version": "0.3"}}
    assert stack_differences({**base, "engine": kernel}, other) == \
        ["blas: kernel=Haswell -> kernel=SkylakeX", "engine: cpu=znver4 -> cpu=skylake"]
