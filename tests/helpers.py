"""Plain helpers shared by several test modules (fixtures are in conftest.py). A test module imports from here,
from conftest, fakedata or slurm_cluster, never from another test module (tests/test_architecture.py checks)."""
import csv
import hashlib
import importlib
import os
import re
import shlex
import subprocess
import sys

from conftest import ROOT, run_cli, script_env
from fakedata import make_cifar

# ---- the reproduction scripts' dry runs and job lists (tests/test_scripts.py, tests/test_sweep.py) ----------
# (script, arguments, extra environment): every script, with the variants that print other commands
CASES = [
    ("main_job.sh", ["{tmp}/main_job"], {}),
    ("main_job.sh", ["{tmp}/main_job"], {"BUDGET": "smoke"}),
    ("mdc_table1.sh", [], {}),
    ("mdc_table1.sh", ["cifar100", "10"], {"BUDGET": "cpu"}),
    ("mdc_table1.sh", ["svhn", "3", "--niter", "10"], {"BUDGET": "smoke"}),
    ("mdc_table1.sh", ["fashion", "4"], {"BUDGET": "cpu"}),
    ("mdc_table1.sh", ["imagenet"], {}),
    ("mdc_table1.sh", ["imagenet", "3"], {"BUDGET": "smoke"}),
    ("mdc_table2.sh", ["{ext}"], {}),
    ("mdc_table2.sh", ["{ext}", "cifar10", "3"], {"BUDGET": "smoke"}),
    ("mdc_table2.sh", ["{ext}", "fashion", "4"], {"BUDGET": "cpu", "EXTERNAL_METHODS": "mtt"}),
    ("mdc_table3.sh", [], {}),
    ("mdc_table3.sh", ["fashion", "4"], {"BUDGET": "cpu"}),
    ("mdc_table3.sh", ["cifar10", "2", "--niter", "3"], {"BUDGET": "smoke"}),
    ("mdc_table4.sh", [], {}),
    ("mdc_table4.sh", ["imagenet", "3"], {"BUDGET": "smoke"}),
    ("mdc_table5.sh", [], {}),
    ("mdc_table5.sh", ["fashion", "4"], {"BUDGET": "cpu"}),
    ("mdc_table6.sh", [], {}),
    ("mdc_table6.sh", ["fashion", "4"], {"BUDGET": "cpu"}),
    ("mdc_table6.sh", ["cifar10", "2"], {"BUDGET": "smoke"}),
    ("mdc_table8.sh", [], {}),
    ("mdc_table8.sh", ["svhn", "3"], {"BUDGET": "smoke"}),
    ("mdc_table10.sh", [], {}),
    ("mdc_table10.sh", ["fashion", "4"], {"BUDGET": "cpu"}),
    ("mdc_table11.sh", [], {}),
    ("mdc_table11.sh", ["cifar100", "3"], {"BUDGET": "smoke"}),
    ("yoco_fashion.sh", ["{tmp}/yoco_fashion"], {}),
    ("yoco_table1.sh", ["cifar10"], {"GENERATE": "1"}),
    ("yoco_table1.sh", ["cifar100", "reproduce_1"], {"BUDGET": "smoke"}),
    ("yoco_table1.sh", ["imagenet"], {"GENERATE": "1", "BUDGET": "cpu"}),
    ("yoco_table2.sh", [], {}),
    ("yoco_table3.sh", ["reproduce_2"], {}),
    ("yoco_table4.sh", [], {"BUDGET": "smoke"}),
    ("yoco_table5.sh", [], {}),
]
CASE_IDS = [f"{c[0]}-{'-'.join(c[1][:1])}-{c[2].get('BUDGET', 'paper')}" for c in CASES]


def dry_run(path, args=(), env=None):
    """The text dry run (DRY_RUN=1) of a script: the commands it would run, one shell line each."""
    e = dict(os.environ, DRY_RUN="1", **(env or {}))
    p = subprocess.run(["bash", path, *args], capture_output=True, text=True, env=e, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def job_argvs(path, args=(), env=None):
    """The argv of every command of the script's job list (DRY_RUN=jobs), in order."""
    from sweep.jobs import job_list

    stages, _ = job_list(path, [str(a) for a in args], dict(os.environ, **(env or {})))
    return [c.argv for st in stages for c in st.commands]


def parser_of(cmd):
    """(parser factory, argv) of a printed ``python[3] X.py ...`` or ``python[3] -m module ...`` line."""
    if cmd[1] == "-m":
        return importlib.import_module(cmd[2]).get_args_parser, cmd[3:]
    return importlib.import_module(os.path.basename(cmd[1])[:-3]).get_args_parser, cmd[2:]


def check_commands(cmds):
    """Parse every python command (argv) of a job list with the pre-check of the scripts and the sweep
    (``sweep.precheck.check_job``, deep: each program's pre-work checks too); returns how many there were."""
    from sweep.jobs import Command
    from sweep.precheck import check_job
    from utils.errors import UserError

    n = 0
    for cmd in cmds:
        if not cmd[0].startswith("python"):
            continue
        program = cmd[2] if cmd[1] == "-m" else os.path.basename(cmd[1])
        try:
            check_job(Command(list(cmd), ROOT, {}, "--device" in cmd, program), deep=True)
        except UserError as e:
            raise AssertionError(f"the command does not parse: {shlex.join(cmd)}: {e}")
        n += 1
    return n


def precheck_refused(argv, env=None, cwd=None, needle=(), runner=None):
    """Run ``argv`` (a table script or ``python -m sweep``) expecting the pre-check's refusal: exit 2, one line
    ``error: ...`` on stderr holding every ``needle``, nothing on stdout, and nothing created or changed in
    ``cwd`` (the working folder, snapshot before/after). Returns the error line."""
    cwd = cwd or ROOT
    before = snapshot(cwd)
    p = subprocess.run(argv, cwd=cwd, env={**os.environ, "INSTALL": "0", **(env or {})}, capture_output=True,
                       text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr and not [ln for ln in p.stdout.splitlines() if ln.startswith("{")], p.stdout
    for n in needle:
        assert n in lines[0], (n, lines[0])
    assert snapshot(cwd) == before, "a refused invocation changed the working folder"
    return lines[0]


# ---- a fake table script in the format of scripts/*.sh (tests/test_sweep*.py, tests/test_slurm_profile.py) -----
JOB = r'''import os, subprocess, sys, time
name, sleep = sys.argv[1], float(sys.argv[2])
child = subprocess.Popen(["sleep", str(max(sleep, 0.01))])  # a grandchild: killed with the job's process group
with open("events.log", "a") as f:
    f.write(f"{name} start {time.time()} {os.getpid()} {child.pid}\n")
print(f"{name}: CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} FOO={os.environ.get('FOO')!r}",
      "argv", sys.argv[1:], flush=True)
if os.path.exists(f"fail_{name}"):
    sys.exit(3)
child.wait()
with open("events.log", "a") as f:
    f.write(f"{name} end {time.time()}\n")
'''

FAKE = r'''#!/usr/bin/env bash
# a fake table script in the format of scripts/*.sh: lib.sh's run prints each command under DRY_RUN=1
set -euo pipefail
source "{root}/scripts/lib.sh"
SLEEP=${{SLEEP:-0}}
echo "== condensations =="
for K in 1 2; do
  run python3 cond.py "cond$K" "$SLEEP" --device "$DEVICE" --save_dir "runs/set $K"
done
echo "== evaluations (${{FOO:-no FOO}}) =="
for K in 1 2 3; do
  run python3 evalx.py "eval$K" 0 --device "$DEVICE" --test_data_dir "runs/set $(( (K + 1) % 2 + 1 ))"
done
run python3 report.py summary 0
echo "total wall time: 0 s"
'''


def make_fake(tmp_path):
    """The fake table script and its work folder with the jobs' programs: (script, work)."""
    work = tmp_path / "work"
    work.mkdir()
    for prog in ("cond.py", "evalx.py", "report.py"):
        (work / prog).write_text(JOB)
    script = tmp_path / "fake.sh"
    script.write_text(FAKE.format(root=ROOT))
    return script, work


def events(work):
    """{(job name, "start" or "end"): time} of the fake script's jobs run in ``work``."""
    p = work / "events.log"
    out = {}
    for line in (p.read_text().splitlines() if p.exists() else []):
        name, what, t, *rest = line.split()
        out[(name, what)] = float(t)
    return out


# ---- the table scripts at the smoke budget (tests/test_tables_smoke.py, tests/test_yoco_table_smoke.py,
# tests/test_sweep_backends.py, conftest.py's mdc_table1_smoke) --------------------------------------------------
def make_table_data(folder):
    """The fake CIFAR-10 of the table smokes in ``folder`` (a work folder's ``datasets``): 50 training images per
    class (IPC_F 10 at f = 2), 5 test images per class. The same files every time (seed 0)."""
    make_cifar(str(folder), 10, n_train=500, n_test=50)
    return folder


def run_table(workdir, script, *args, **env):
    """Run ``scripts/SCRIPT ARGS`` at the smoke budget on the CPU with its work in ``workdir``; its stdout."""
    e = dict(os.environ, WORKDIR=str(workdir), BUDGET="smoke", DEVICE="cpu", INSTALL="0", TQDM_DISABLE="1",
             OMP_NUM_THREADS="1", **env)
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], env=e, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ---- condensation runs -------------------------------------------------------------------------------------
def args_of(*argv):
    """condense_reg.py's finalized arguments of a command line (no run)."""
    from cli.arguments import parse_args
    from condensation.runner import finalize_args
    from condense_reg import get_args_parser

    return finalize_args(parse_args(get_args_parser(), [str(a) for a in argv]))


def data(folder, it):
    """(images, labels) of a run folder's ``data_IT.pt``."""
    import torch

    return torch.load(os.path.join(folder, f"data_{it}.pt"), weights_only=True)


# fake CIFAR-10: 5 partitions of 2 classes for the 2-rank default-mode job (rank 0: 0, 2, 4; rank 1: 1, 3)
C10 = ["-d", "cifar10", "--device", "cpu", "--width", "0.125", "--niter", "1", "--inner_loop", "10",
       "--n_data", "16", "--batch_real", "4", "--ipc", "2", "-f", "2", "--adaptive_reg", "True",
       "--adaptive_period", "2", "--deterministic", "True", "--nclass_sub", "2"]


def torchrun_cmd(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            os.path.join(ROOT, "condense_reg_mp.py"), *map(str, args)]


def torchrun(nproc, *args, cwd, check=True):
    """``torchrun --nproc_per_node NPROC condense_reg_mp.py ARGS`` in ``cwd`` (CPU, gloo)."""
    p = subprocess.run(torchrun_cmd(nproc, *args), cwd=cwd, env=script_env(), capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-4000:]}")
    return p


# ---- tracking --------------------------------------------------------------------------------------------
def aim_runs(repo):
    """The runs of an Aim repository through Aim's own API (the index brought up to date first, as ``aim up``
    does), as dicts: name, experiment, hparams, metrics {(name, context): (steps, values)}, sequences of
    texts and images {(name, context): {step: [values]}}."""
    from aim import Repo
    from aim.storage.context import Context
    from aim.sdk.index_manager import RepoIndexManager

    r = Repo(str(repo))
    manager = RepoIndexManager.get_index_manager(r)
    for h in r.list_all_runs():
        manager.index(h)
    out = []
    for run in Repo(str(repo)).iter_runs():
        metrics = {}
        for m in run.metrics():
            steps, cols = m.data.items_list()
            metrics[(m.name, tuple(sorted(m.context.to_dict().items())))] = (steps, cols[0])
        seqs = {}
        for name, ctx, _ in run.iter_sequence_info_by_type(("aim.text", "aim.image")):
            key = (name, tuple(sorted(ctx.to_dict().items())))
            get = run.get_text_sequence if name not in ("init.png", "aug.png", "syn image") else run.get_image_sequence
            steps, cols = get(name, Context(ctx.to_dict())).data.items_list()
            seqs[key] = dict(zip(steps, cols[0]))
        out.append({"name": run.name, "experiment": run.experiment, "hparams": run["hparams"], "hash": run.hash,
                    "metrics": metrics, "seqs": seqs, "tags": [getattr(t, "name", t) for t in run.props.tags]})
    return out


# ---- refusals: one error line, advice naming real options, the working folder untouched (test_failures.py) ----
def snapshot(root):
    """Every file and folder under ``root``: a file by its bytes' hash and mtime, a folder by its name."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), root) + os.sep] = "folder"
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                digest = hashlib.sha1(f.read()).hexdigest()
            out[os.path.relpath(p, root)] = (digest, os.stat(p).st_mtime_ns)
    return out


def flags_of(script):
    """Every option string of a script's parser (``test.py`` or a module such as ``data.partitions``)."""
    import importlib

    parser = importlib.import_module(script[:-3] if script.endswith(".py") else script).get_args_parser()
    return {o for a in parser._actions for o in a.option_strings}


OTHER_PROGRAMS = {"--nproc_per_node", "--standalone"}  # torchrun's, named in advice on launching partitions


def refused(world, script, args, needle, status=2, runner=run_cli):
    """The command exits with ``status`` and one ``error:`` line holding ``needle`` whose advice names only
    options the script has, prints no traceback, and leaves every byte of the working folder as it was."""
    before = snapshot(world)
    p = runner(script, *args, cwd=world, check=False)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == status, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    named = set(re.findall(r"(?<![\w/.-])(--[a-zA-Z][\w-]*)", lines[0])) - OTHER_PROGRAMS
    assert named <= flags_of(script), f"the message names options {script} does not have: {named - flags_of(script)}"
    assert snapshot(world) == before, "a refused command changed the working folder"
    return lines[0]


def run_main(module, *args, cwd=None, check=False):
    """A module's command line (``python -m evaluation.report``, ``evaluation.mls_trace``) in process, through its
    own ``main(argv)``: returns ``returncode``, ``stdout`` and ``stderr`` like ``conftest.run_cli`` (a runner for
    ``refused``)."""
    import contextlib
    import io
    import types

    main = importlib.import_module(module).main
    out, err, old = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd or old)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:
                code = e.code
    finally:
        os.chdir(old)
    assert not check or code == 0, err.getvalue()
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
