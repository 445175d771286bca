"""MDC Table 1 at the smoke budget through both backends of ``python -m sweep``, and the Slurm backend against
a real one-node cluster (tests/slurm_cluster.py): the table submitted at once ends with the local backend's
report; a failure cancels its dependants and a re-submission runs only what is not done; a cancelled or
preempted condensation resumes from its checkpoint; two tables sharing a run folder condense it once. The
Slurm tests are skipped, saying why, where slurm-wlm and munge cannot be installed."""
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_script
from helpers import events, make_fake, make_table_data

pytestmark = pytest.mark.slow

FAST = ["--gpus_per_job", "0", "--cpus_per_job", "1", "--time", "30", "--signal_delay_s", "10"]


def sweep(cluster, work, script, *flags, args=(), env=None, check=True):
    """``python -m sweep SCRIPT FLAGS -- ARGS`` in the cluster's environment, the script's work in ``work``."""
    e = dict(cluster.env, WORKDIR=str(work), DEVICE="cpu", INSTALL="0", TQDM_DISABLE="1", OMP_NUM_THREADS="1",
             PYTHONPATH=ROOT, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "sweep.local", str(script), *flags, "--", *map(str, args)], cwd=ROOT,
                       env=e, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"sweep failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def submit(cluster, work, script, *flags, **kw):
    return sweep(cluster, work, script, "--backend", "slurm", *FAST, *flags, **kw)


def wait_queue_empty(cluster, timeout=600):
    deadline = time.time() + timeout
    while cluster.run("squeue", "-h", "-o", "%i").stdout.strip():
        assert time.time() < deadline, cluster.run("squeue").stdout + cluster.logs()
        time.sleep(0.5)


def listing(cluster, work, script, args=(), env=None):
    return sweep(cluster, work, script, "--backend", "slurm", "--list", args=args, env=env).stdout


def job_ids(out):
    return [line.split("job ")[1].split(",")[0] for line in out.splitlines() if "submitted stage" in line]


# ---- (a) MDC Table 1 at the smoke budget: Slurm ends with the local backend's report ---------------------------
@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    w = tmp_path_factory.mktemp("slurm_tables")
    make_table_data(w / "datasets")  # the files of mdc_table1_smoke's work folder
    return w


def table1_work(cifar, name):
    work = cifar / name
    work.mkdir()
    (work / "datasets").symlink_to(cifar / "datasets")
    return work


TABLE1 = (os.path.join(ROOT, "scripts", "mdc_table1.sh"), ["cifar10", "2"], {"BUDGET": "smoke"})
REPORT = "raid/mdc_table1/cifar10/report/"


# MDC Table 1 through the local backend: conftest.py's mdc_table1_smoke (once per session: Table 3's smoke,
# tests/test_tables_smoke.py, starts from its work folder), the same command with the same data


def test_mdc_table1_on_slurm_ends_with_the_local_report(slurm, cifar, request):
    script, args, budget = TABLE1
    remote = table1_work(cifar, "slurm")
    out = submit(slurm, remote, script, args=args, env=budget).stdout
    assert [line.split(": job")[0][11:] for line in out.splitlines() if "submitted stage" in line] == [
        "submitted stage 1 (condense_reg.py)", "submitted stage 2 (test.py)", "submitted stage 3 (evaluation.report)"]
    assert "scancel " in out and "--list" in out  # how to watch and cancel; the submission returns at once
    # the local backend meanwhile, unless another test worker ran it already (the numbers do not depend on it)
    local, _ = request.getfixturevalue("mdc_table1_smoke")
    wait_queue_empty(slurm)
    for f in ("mdc1.csv", "mdc1.md"):
        assert (remote / REPORT / f).read_text() == (local / REPORT / f).read_text(), f
    listed = listing(slurm, remote, script, args, budget)
    assert "13 commands in 3 stages, 13 done before" in listed and listed.count("[done]") == 13
    # every command has the local backend's log, with where it ran
    logs = remote / "raid" / "sweeps" / "mdc_table1"
    assert "# on: Slurm job " in (logs / "s01-001-condense_reg.log").read_text()
    assert "nothing to submit" in submit(slurm, remote, script, args=args, env=budget).stdout


def test_mdc_table1_smoke_report_has_the_papers_layout(mdc_table1_smoke):
    work, out = mdc_table1_smoke
    rep = work / REPORT
    md = (rep / "mdc1.md").read_text()
    assert "| Method | IPC-1 | IPC-2 | Avg. |" in md and "13 done, 0 skipped, 0 failed" in out
    with open(rep / "mdc1.csv") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["Method"], r["column"]): r for r in rows}
    for method in ("A", "B", "C", "MDC"):
        for col in ("IPC-1", "IPC-2", "Avg."):
            assert cells[method, col]["mean"] != "", (method, col)  # every cell filled
    assert [r["Method"] for r in rows if r["column"] == "IPC-1"] == ["A", "B", "C", "MDC"]
    assert (rep / "mdc1.png").stat().st_size > 1000
    # Baseline B at IPC-2 concatenates the two IPC-1 runs (block 0 is Baseline A's IPC-1 run)
    assert sorted(os.listdir(work / "raid" / "mdc_table1" / "cifar10")) == [
        "A.json", "A_ipc1", "A_ipc1_idx_1", "B.json", "C", "C.json", "MDC", "MDC.json", "report"]
    # the report step's output is in its log (the table as Markdown)
    assert md in (work / "raid" / "sweeps" / "mdc_table1" / "s03-001-evaluation.report.log").read_text()


# ---- (b) a failure cancels its dependants; the re-submission runs only what is not done -------------------------
@pytest.fixture
def fake(tmp_path):
    return make_fake(tmp_path)


def test_a_failed_job_cancels_its_dependants_and_a_resubmission_runs_the_rest(slurm, fake):
    script, work = fake
    (work / "fail_cond2").write_text("")
    out = submit(slurm, work, script).stdout
    assert len(job_ids(out)) == 3
    wait_queue_empty(slurm)
    listed = listing(slurm, work, script)
    logs = work / "raid" / "sweeps" / "fake"
    assert "[done] s01-001-cond" in listed
    assert f"[failed] s01-002-cond: python3 cond.py cond2 0 --device cpu --save_dir 'runs/set 2'\n      (exit status 3, " \
           f"log {logs}/s01-002-cond.log; Slurm log {logs}/slurm/" in listed
    assert listed.count("[not run]") == 4 and "ended without finishing it" in listed  # stages 2, 3: cancelled
    assert {k[0] for k in events(work)} == {"cond1", "cond2"}  # no evaluation ran on the broken stage

    (work / "fail_cond2").unlink()
    (work / "events.log").unlink()
    out = submit(slurm, work, script).stdout
    assert "submitted stage 1 (cond.py): job" in out and ", 1 task\n" in out.split("submitted stage 2")[0]
    wait_queue_empty(slurm)
    assert {k[0] for k in events(work)} == {"cond2", "eval1", "eval2", "eval3", "summary"}  # cond1 not again
    assert listing(slurm, work, script).count("[done]") == 6
    assert "nothing to submit" in submit(slurm, work, script).stdout


def test_bad_resources_are_one_error_before_anything_is_submitted(slurm, fake, tmp_path):
    script, work = fake
    profile = tmp_path / "cluster.yaml"
    cases = [(["--partition", "nosuch"], "partition 'nosuch' is not a partition of this cluster"),
             (["--gpus_per_job", "1"], "asks for 1 GPUs per job but the nodes of partition"),
             (["--profile", str(profile)], "unknown key 'partitions'"),
             (["--time", "soon"], "is not a Slurm time limit")]
    profile.write_text("partitions: gpu\n")
    for flags, message in cases:
        p = sweep(slurm, work, script, "--backend", "slurm", "--cpus_per_job", "1", *flags, check=False)
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    bare = tmp_path / "bin"  # a PATH with bash and python3 but no Slurm client
    bare.mkdir()
    for exe in ("bash", "python3"):
        (bare / exe).symlink_to(shutil.which(exe))
    p = sweep(slurm, work, script, "--backend", "slurm", *FAST, check=False, env={"PATH": str(bare)})
    assert p.returncode == 2 and "sbatch is not on PATH" in p.stderr, p.stderr
    assert slurm.run("squeue", "-h").stdout.strip() == "" and not (work / "raid" / "sweeps" / "fake" / "slurm").exists()
    # --print shows the job graph and the sbatch parameters, submits nothing
    out = submit(slurm, work, script, "--print", "--partition", slurm.partition).stdout
    assert "stage 2: evalx.py (3 jobs in parallel): 1 job array of 3 tasks (at most 64 at once), after stage 1" in out
    assert f"--partition={slurm.partition}" in out and "--signal=USR2@10" in out and "--requeue" in out
    assert slurm.run("squeue", "-h").stdout.strip() == ""


# ---- (c) a cancelled or preempted condensation resumes from its checkpoint ------------------------------------
COND = ["-d", "cifar10", "--device", "cpu", "--width", "0.125", "--niter", "1", "--inner_loop", "20", "--n_data", "16",
        "--batch_real", "4", "--ipc", "2", "-f", "2", "--adaptive_reg", "True", "--adaptive_period", "2",
        "--deterministic", "True", "--eval_during", "False"]


def cond_script(tmp_path, name, save_dir, *extra):
    script = tmp_path / f"{name}.sh"
    script.write_text(f'source "{ROOT}/scripts/lib.sh"\n'
                      f'run python3 "{ROOT}/condense_reg.py" {" ".join(COND)} --save_dir {save_dir} --resume '
                      f'{" ".join(extra)}\n')
    return script


@pytest.fixture(scope="module")
def uninterrupted(cifar):
    work = cifar / "cond"
    work.mkdir()
    (work / "datasets").symlink_to(cifar / "datasets")
    run_script("condense_reg.py", *COND, "--save_dir", "runs/u", cwd=work)
    return work, torch.load(work / "runs/u/data_5.pt", weights_only=True)


def wait_for(path, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["scancel", "preempt"])
def test_a_stopped_condensation_resumes_from_its_checkpoint(slurm, uninterrupted, tmp_path, how):
    """scancel, then a re-submission; or SIGUSR2 (what Slurm sends before preemption or the time limit): the
    job stops its command and requeues itself. Either way the run resumes and ends as the uninterrupted one."""
    work, want = uninterrupted
    script = cond_script(tmp_path, f"cond_{how}", f"runs/{how}")
    (job,) = job_ids(submit(slurm, work, script).stdout)
    wait_for(work / f"runs/{how}/checkpoint.pt")
    assert not (work / f"runs/{how}/data_5.pt").exists(), "the run ended before it could be stopped"
    if how == "scancel":
        slurm.run("scancel", job)
        wait_queue_empty(slurm)
        assert "[stopped]" in listing(slurm, work, script)  # killed by SIGTERM: not a failure of its own
        (job2,) = job_ids(submit(slurm, work, script).stdout)
        assert job2 != job
    else:
        slurm.run("scancel", "--signal=USR2", job)
    wait_queue_empty(slurm)
    got = torch.load(work / f"runs/{how}/data_5.pt", weights_only=True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    log = (work / "raid" / "sweeps" / f"cond_{how}" / "s01-001-condense_reg.log").read_text()
    assert "resumed from" in log and "[done]" in listing(slurm, work, script)
    if how == "preempt":  # one submission: the job requeued itself
        slurm_log = "".join(p.read_text() for p in (work / "raid" / "sweeps" / "cond_preempt" / "slurm").glob("*.out"))
        assert "Requeued job" in slurm_log and log.count("# started:") == 2  # both attempts in the command's log


# ---- (d) two tables that share a run folder condense it once ---------------------------------------------------
def test_two_submissions_sharing_a_run_folder_condense_it_once(slurm, uninterrupted, tmp_path):
    work, want = uninterrupted
    scripts = [cond_script(tmp_path, f"table{k}", "runs/shared", "--lock_wait", "-1") for k in (1, 2)]
    for s in scripts:
        submit(slurm, work, s)
    wait_queue_empty(slurm)
    logs = [(work / "raid" / "sweeps" / f"table{k}" / "s01-001-condense_reg.log").read_text() for k in (1, 2)]
    assert sum("nothing to do" in log for log in logs) == 1, logs  # the second waited, then found it complete
    assert sum("waiting for" in log for log in logs) == 1
    got = torch.load(work / "runs/shared/data_5.pt", weights_only=True)
    assert torch.equal(got[0], want[0])
    metrics = [json.loads(line) for line in (work / "runs/shared/metrics.jsonl").read_text().splitlines()]
    saves = [r["it"] for r in metrics if r["type"] == "save"]
    assert saves == sorted(set(saves))  # every save point once: one process condensed
