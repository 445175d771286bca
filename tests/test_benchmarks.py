"""The benchmark scripts run (tiny budgets, CPU), print their ratios, and benchmarks/gpu_suite.sh's commands are
accepted by the scripts they call (its dry run: a flag typo fails here). No timing is asserted."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, run_script, script_env

pytestmark = pytest.mark.slow  # end-to-end runs of the scripts


def test_gpu_suite_dry_run_checks_every_command():
    p = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_suite.sh"), "unused"], env=dict(
        script_env(), DRY_RUN="1"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    cmds = [line for line in p.stdout.splitlines() if line.startswith("python")]
    assert [c.split()[1] for c in cmds] == ["benchmarks/condense_step.py", "benchmarks/condense_step.py",
                                           "benchmarks/eval_epoch.py", "benchmarks/dynamics.py",
                                           "benchmarks/parallel.py"]
    assert all("--device cuda" in c for c in cmds)
    bad = run_script("benchmarks/condense_step.py", "--paths", "default,nope", "--dry-run", check=False)
    assert bad.returncode == 2 and "unknown --paths" in bad.stderr


def test_benchmarks_print_ratios_and_one_table(tmp_path):
    run_script("benchmarks/condense_step.py", "--device", "cpu", "--reps", "1", "--width", "0.125", "--n_data", "64",
               "--mls", "2", "--json", tmp_path / "condense_step.json")
    with open(tmp_path / "condense_step.json") as f:
        d = json.load(f)
    assert set(d["times"]["inner step"]) == {"reference formulation", "default", "class-batched", "bf16",
                                             "bf16 + class-batched"}
    assert d["agreement"]["default"] == 0
    assert d["agreement"]["reference formulation"] < 1e-3 and d["agreement"]["class-batched"] < 1e-3
    assert d["agreement"]["bf16"] > d["agreement"]["class-batched"]  # bf16 is another arithmetic
    assert "AMD" in d["machine"] or "machine:" in d["machine"]
    out = run_script("benchmarks/eval_epoch.py", "--device", "cpu", "--reps", "1", "--epochs", "1", "--n", "40",
                     "--val_n", "500", "--json", tmp_path / "eval_epoch.json").stdout
    assert "fp32 channels-last" in out and "vs fp32" in out
    table = run_script("benchmarks/suite_table.py", tmp_path).stdout
    assert table.count("| class updates, 1 inner step (MLS 2) |") == 5
    assert "| evaluation epoch, 40 images | bf16 |" in table and "full preset" in table
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_script("benchmarks/suite_table.py", empty, check=False)
    assert p.returncode != 0 and "no benchmark JSON" in p.stderr
