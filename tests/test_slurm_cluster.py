"""The test Slurm cluster (tests/slurm_cluster.py) does what the Slurm tests rely on: job arrays, ``afterok``
dependencies, ``--kill-on-invalid-dep``, ``srun -n 2`` inside a batch job with the test's interpreter and
``PYTHONPATH`` (requeue and ``scancel``: tests/test_sweep_backends.py)."""
import os
import sys

import pytest

pytestmark = pytest.mark.slow


def sbatch(cluster, *args, env=None):
    """Submit; returns the job id."""
    return cluster.run("sbatch", "--parsable", *args, env=env).stdout.strip().split(";")[0]


def test_an_array_then_its_afterok_dependant(slurm, tmp_path):
    array = sbatch(slurm, "--array=0-2", "-o", tmp_path / "a_%a.out", "--wrap",
                   f"echo task $SLURM_ARRAY_TASK_ID > {tmp_path}/t$SLURM_ARRAY_TASK_ID")
    after = sbatch(slurm, f"--dependency=afterok:{array}", "-o", tmp_path / "after.out", "--wrap",
                   f"cat {tmp_path}/t0 {tmp_path}/t1 {tmp_path}/t2")
    assert slurm.wait(after) == "COMPLETED"
    assert slurm.wait(array) == ["COMPLETED"] * 3
    assert (tmp_path / "after.out").read_text().split("\n")[:3] == ["task 0", "task 1", "task 2"]


def test_a_failed_jobs_dependant_is_cancelled(slurm, tmp_path):
    failed = sbatch(slurm, "-o", tmp_path / "f.out", "--wrap", "exit 3")
    never = sbatch(slurm, f"--dependency=afterok:{failed}", "--kill-on-invalid-dep=yes", "-o", tmp_path / "n.out",
                   "--wrap", f"touch {tmp_path}/ran")
    assert slurm.wait(failed) == "FAILED" and slurm.job(failed)["ExitCode"] == "3:0"
    assert slurm.wait(never) == "CANCELLED" and slurm.job(never)["Reason"] == "DependencyNeverSatisfied"
    assert not (tmp_path / "ran").exists()


def test_srun_runs_two_tasks_with_the_tests_python(slurm, tmp_path):
    script = tmp_path / "two.sh"
    script.write_text("#!/bin/bash\n"
                      "echo batch step=${SLURM_STEP_ID:-none} ntasks=$SLURM_NTASKS\n"
                      "srun -n 2 python3 -c 'import os, sys; print(\"task\", os.environ[\"SLURM_PROCID\"], "
                      "os.environ[\"SLURM_STEP_NUM_TASKS\"], sys.executable, os.environ[\"PYTHONPATH\"])'\n")
    job = sbatch(slurm, "-n", 2, "-o", tmp_path / "two.out", script, env={"PYTHONPATH": "/the/tests/path"})
    assert slurm.wait(job) == "COMPLETED", (tmp_path / "two.out").read_text()
    lines = (tmp_path / "two.out").read_text().splitlines()
    assert lines[0] == "batch step=none ntasks=2"  # the batch shell is no step: not a rank (World.from_env)
    exe = os.path.realpath(sys.executable)
    tasks = sorted(line.split() for line in lines[1:])
    assert [t[:3] for t in tasks] == [["task", "0", "2"], ["task", "1", "2"]]
    assert all(os.path.realpath(t[3]) == exe and t[4] == "/the/tests/path" for t in tasks), tasks
