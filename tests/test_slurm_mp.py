"""condense_reg_mp.py under Slurm's ``srun`` (condensation/parallel.py ``launch_env``, scripts/condense_mp.sbatch):
the launch rule and the host-list parser (fast), the sbatch file's dry run (fast), and real 2-task runs on the
test cluster (tests/slurm_cluster.py, gloo on the CPU): the sbatch file, one srun step of 2 tasks, gives the files
of the 2-rank torchrun run (slow)."""
import os
import shlex
import subprocess

import pytest
import torch

from condensation.parallel import World, expand_hostlist, launch_env
from conftest import ROOT, script_env
from fakedata import make_cifar
from helpers import C10, check_commands, data, dry_run, torchrun
from utils.errors import UserError

SBATCH = os.path.join(ROOT, "scripts", "condense_mp.sbatch")


@pytest.mark.parametrize("spec,hosts", [
    ("vm", ["vm"]),
    ("node[01-03,07],gpu5", ["node01", "node02", "node03", "node07", "gpu5"]),
    ("gpu5,node[8-11]", ["gpu5", "node8", "node9", "node10", "node11"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("r[1-2]n[1,3]", ["r1n1", "r1n3", "r2n1", "r2n3"]),
    ("a[1]-ib,b", ["a1-ib", "b"]),
])
def test_hostlist(spec, hosts):
    assert expand_hostlist(spec) == hosts


@pytest.mark.parametrize("spec", ["a[1-", "a[x]", "a]", "a[[1]]", "a,,b", "a[3-1]", "", "a[]"])
def test_hostlist_errors(spec):
    with pytest.raises(ValueError):
        expand_hostlist(spec)


STEP = {"SLURM_JOB_ID": "12345", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_JOB_NODELIST": "gpu[07-08]"}


def test_an_srun_step_of_several_tasks_is_a_world():
    got = launch_env(STEP)
    assert got == {"launcher": "srun", "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                   "MASTER_PORT": str(20000 + 12345 % 10000)}
    w = World.from_env(STEP)
    assert (w.rank, w.size, w.local_rank, w.enabled, w.launcher, w.master) == (3, 4, 1, True, "srun", ("gpu07", 22345))
    # MASTER_ADDR / MASTER_PORT set by the user win; the step's node list wins over the job's
    got = launch_env(dict(STEP, MASTER_ADDR="head", MASTER_PORT="29400", SLURM_STEP_NODELIST="gpu08"))
    assert (got["MASTER_ADDR"], got["MASTER_PORT"]) == ("head", "29400")
    assert launch_env(dict(STEP, SLURM_STEP_NODELIST="gpu08"))["MASTER_ADDR"] == "gpu08"
    # no step node list (older Slurm): the job's; no step task count: the job's
    old = {k: v for k, v in STEP.items() if k not in ("SLURM_STEP_NODELIST", "SLURM_STEP_NUM_TASKS")}
    assert launch_env(old)["MASTER_ADDR"] == "gpu07" and launch_env(old)["WORLD_SIZE"] == "4"


def test_what_is_not_an_srun_world():
    batch = {k: v for k, v in STEP.items() if not k.startswith("SLURM_STEP")}  # the batch script's shell
    assert launch_env(batch) is None and not World.from_env(batch).enabled
    assert launch_env(dict(STEP, SLURM_STEP_NUM_TASKS="1")) is None  # srun -n 1: a plain run (--phase p)
    assert launch_env({}) is None and not World.from_env({}).enabled
    # torchrun (also torchrun started by srun): its variables, env:// rendezvous
    tr = dict(STEP, RANK="5", WORLD_SIZE="16", LOCAL_RANK="5")
    assert launch_env(tr)["launcher"] == "torchrun" and launch_env(tr)["RANK"] == "5"
    w = World.from_env(tr)
    assert (w.rank, w.size, w.local_rank, w.launcher, w.master) == (5, 16, 5, "torchrun", None)


def test_a_bad_node_list_names_the_fix():
    with pytest.raises(UserError, match=r"SLURM_STEP_NODELIST='gpu\[07-': an unclosed bracket; set MASTER_ADDR"):
        launch_env(dict(STEP, SLURM_STEP_NODELIST="gpu[07-"))
    assert launch_env(dict(STEP, SLURM_STEP_NODELIST="gpu[07-", MASTER_ADDR="h"))["MASTER_ADDR"] == "h"


def _no_slurm_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return dict(env, **extra)


def test_sbatch_file_dry_run_prints_an_srun_of_a_command_that_parses(tmp_path):
    out = dry_run(SBATCH, ["--reproduce", "-d", "cifar100", "-f", "2", "--ipc", "10", "--adaptive_reg", "True",
                           "--nclass_sub", "10"], {"WORKDIR": str(tmp_path)})
    lines = [shlex.split(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0][:2] == ["srun", "--kill-on-bad-exit=1"]
    cmd = lines[0][lines[0].index("python3"):]
    assert cmd[1] == os.path.join(ROOT, "condense_reg_mp.py")  # WORKDIR: the script by its full path
    assert check_commands([cmd]) == 1
    assert os.listdir(tmp_path) == []  # nothing ran


def test_sbatch_file_outside_a_job_names_the_fix():
    p = subprocess.run(["bash", SBATCH, "-d", "cifar10", "--ipc", "2", "--nclass_sub", "5"], env=_no_slurm_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "submit it with sbatch" in p.stderr


# ------------------------------------------------------------------------------------------------
# real runs on the test cluster (slow)

ARGS = list(C10)
ARGS[ARGS.index("--nclass_sub") + 1] = "5"  # 2 partitions: rank 0 phase 0, rank 1 phase 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 2-rank torchrun run the Slurm runs must equal."""
    root = tmp_path_factory.mktemp("slurm_mp")
    make_cifar(str(root / "data"), 10, n_train=300, n_test=50)
    torchrun(2, *ARGS, "--data_dir", root / "data", "--save_dir", "runs/torchrun", cwd=root)
    return root


def assert_same_run(root, name):
    for ph in range(2):
        for it in (2, 10):
            a, b = data(root / f"runs/torchrun_5_phase{ph}", it), data(root / f"runs/{name}_5_phase{ph}", it)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), (name, ph, it)
    a, b = (torch.load(root / f"runs/{n}_5_merged/data.pt", weights_only=True) for n in ("torchrun", name))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def finished(cluster, job, out):
    state = cluster.wait(job, timeout=600)
    text = out.read_text() if out.exists() else "(no output)"
    assert state == "COMPLETED", f"job {job}: {state}\n{text[-4000:]}"
    return text


@pytest.mark.slow
def test_the_sbatch_file_end_to_end(slurm, reference):
    root, out = reference, reference / "sbatch.out"
    job = slurm.run("sbatch", "--parsable", "--nodes", 1, "--ntasks-per-node", 2, "--gpus-per-node", 0,
                    "--cpus-per-task", 1, "-o", out, SBATCH, *ARGS, "--data_dir", root / "data",
                    "--save_dir", "runs/sbatch", cwd=ROOT, env=dict(script_env(), WORKDIR=str(root))).stdout.strip()
    text = finished(slurm, job, out)  # one srun step of 2 tasks, one rank each, rank 0 merging
    assert "rank 0 of 2: phases [0]" in text and "rank 1 of 2: phases [1]" in text and "merged 2 partitions" in text
    assert_same_run(root, "sbatch")
