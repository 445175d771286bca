"""sweep/jobs.py and sweep/local.py: the job list (DRY_RUN=jobs) of every script read into stages, and local
sweeps of a small fake script (sourcing scripts/lib.sh, so its job list is the real format) run on the CPU."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from helpers import CASE_IDS, CASES, events, make_fake
from sweep import jobs, local as sweep
from utils.errors import UserError

CONDENSE = ("condense_reg.py", "condense.py")


# ---- the real scripts ----------------------------------------------------------------------------------------
def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def io_paths(c):
    """(paths read, paths written) of one command, by the flags of the project's scripts (--results_file is
    an append under a lock, shared by parallel test.py jobs on purpose: not counted as a write)."""
    a, reads, writes = c.argv, set(), set()
    for f in ("--save_dir", "--out", "--plot", "--save_subset"):
        if flag(a, f):
            writes.add(flag(a, f))
    for f in ("--test_data_dir", "--custom-data-dir", "--score_file"):
        if flag(a, f):
            reads.add(flag(a, f))
    if c.program == "test.py" and flag(a, "--test_type") == "baseline_b":  # base, base_idx_1, ...
        reads |= {f"{flag(a, '--test_data_dir')}_idx_{k}" for k in range(1, int(flag(a, "--ipc")))}
    if c.program == "get_training_dynamics.py":
        writes.add(flag(a, "--base-dir") or f"raid/{flag(a, '--reproduce_exp')}")
    if c.program == "generate_importance_score.py":  # reads the dynamics, writes the scores, same folder
        d = flag(a, "--base-dir") or f"raid/{flag(a, '--reproduce_exp')}"
        reads.add(d)
        writes.add(d)
    if c.program == "test.py" and flag(a, "--reproduce_exp"):
        reads.add(f"raid/{flag(a, '--reproduce_exp')}")
    if c.program in ("evaluation.report", "evaluation.mls_trace"):
        reads |= {x.split("=")[-1] for x in a[4:] if not x.startswith("-") and ("/" in x or x == "raid")}
    if c.program == "rm":
        writes |= {x for x in a[1:] if not x.startswith("-")}
    return reads, writes


def related(p, q):
    p, q = os.path.normpath(p), os.path.normpath(q)
    return p == q or p.startswith(q + os.sep) or q.startswith(p + os.sep)


def expected_program(argv):
    if argv[0].startswith("python"):
        return argv[2] if argv[1] == "-m" else os.path.basename(argv[1])
    return os.path.basename(argv[0])


@pytest.mark.parametrize("script,args,env", CASES, ids=CASE_IDS)
def test_job_list_of_every_script_parses_into_stages(tmp_path, ext, script, args, env):
    path = os.path.join(ROOT, "scripts", script)
    args = [a.format(tmp=tmp_path, ext=ext) for a in args]
    stages, notes = jobs.job_list(path, args, dict(os.environ, **env))
    cmds = [c for st in stages for c in st.commands]
    assert stages and all(st.commands for st in stages)
    assert all(c.cwd == ROOT and c.env["PYTHONPATH"].split(":")[0] == ROOT for c in cmds)  # lib.sh's export

    # (that the job list holds exactly the commands of the text dry run, in order, is checked for the same cases
    # by tests/test_scripts.py's test_dry_run_prints_commands_that_parse)

    # program and kind: jobs are the commands with --device; stages are maximal runs of one program and kind
    key = None
    for i, c in enumerate(cmds):
        assert c.program == expected_program(c.argv) and c.job == ("--device" in c.argv), c.text
        assert c.job == (c.program not in ("evaluation.report", "evaluation.mls_trace", "rm")), c.text
        assert c.stage == (cmds[i - 1].stage if (c.program, c.job) == key else (cmds[i - 1].stage + 1 if i else 1))
        key = (c.program, c.job)
    assert not stages[-1].job and stages[-1].program in ("evaluation.report", "evaluation.mls_trace")

    # the condensations come before the evaluations (and dynamics, scores) that read them
    made = {}
    for c in cmds:
        reads, writes = io_paths(c)
        for r in reads:
            for w, st in made.items():
                if related(r, w):
                    assert st < c.stage, f"{c.text} reads {r}, written in its own stage {st}"
        for w in writes:
            made.setdefault(w, c.stage)
    for c in cmds:
        if c.program == "test.py" and flag(c.argv, "--test_data_dir") and flag(c.argv, "--test_data_dir") in made:
            producer = next(p for p in cmds if flag(p.argv, "--save_dir") == flag(c.argv, "--test_data_dir"))
            assert producer.program in CONDENSE and producer.stage < c.stage

    # the order-preserving rule: within a stage no command reads or writes what another one writes
    for st in stages:
        io = [io_paths(c) for c in st.commands]
        for i, (_, wi) in enumerate(io):
            for j, (rj, wj) in enumerate(io):
                if i != j:
                    clash = [(p, q) for p in wi for q in rj | wj if related(p, q)]
                    assert not clash, f"stage {st.number}: {st.commands[i].text} writes what {st.commands[j].text} uses"
    # every results file a report reads is complete: all test.py jobs are in earlier stages
    for c in cmds:
        if c.program == "evaluation.report":
            assert all(t.stage < c.stage for t in cmds if t.program == "test.py")


def lib_script(tmp_path, body):
    script = tmp_path / "s.sh"
    script.write_text(f'source "{ROOT}/scripts/lib.sh"\n' + body)
    return str(script)


def test_job_list_carries_every_argument_exactly(tmp_path):
    words = ["plain", "with space", "it's", 'say "hi"', "a\nb", "tab\there", "", "$HOME", "a*b?[c]", "{a,b}",
             "x!y", "~user", "#hash", "semi;colon|pipe&amp", "(paren)", "back\\slash", "é ü", "a=b,c:d@e%f+g^h",
             "ctl\x01\x1f\r", "{\"json\": [1]}", "\\u0041"]
    script = lib_script(tmp_path, 'echo "a note"\nrun python3 x.py "$@" --device cpu\nrun_tee "out file.md" rm -f x\n')
    stages, notes = jobs.job_list(script, words)
    (job,), (step,) = stages[0].commands, stages[1].commands
    assert job.argv == ["python3", "x.py", *words, "--device", "cpu"] and job.job and job.program == "x.py"
    assert step.argv == ["rm", "-f", "x"] and not step.job and step.tee == "out file.md" and step.stage == 2
    assert notes == ["a note"]


def test_programs_kinds_and_stages(tmp_path):
    script = lib_script(tmp_path, """run python3 -u condense_reg.py --ipc 2 --device cpu
run python3 -W ignore -X dev condense_reg.py --ipc 3 --device=cuda
run python -m evaluation.report mdc1
run python3 -m evaluation.report mdc2
run python3 /x/test.py --device auto
run rm -f x
run python3 -c pass
""")
    stages, _ = jobs.job_list(script)
    got = [(c.program, c.job, c.stage, c.index) for st in stages for c in st.commands]
    assert got == [("condense_reg.py", True, 1, 1), ("condense_reg.py", True, 1, 2), ("evaluation.report", False, 2, 1),
                   ("evaluation.report", False, 2, 2), ("test.py", True, 3, 1), ("rm", False, 4, 1),
                   ("python -c", False, 5, 1)]
    assert [st.describe() for st in stages][:2] == ["stage 1: condense_reg.py (2 jobs in parallel)",
                                                     "stage 2: evaluation.report (2 steps, serial)"]


@pytest.mark.parametrize("line,message", [
    ('{"argv": ["python3"', "is not a JSON object"),
    ('{"argv": [], "cwd": "/", "env": {}, "kind": "job", "stage": 1, "program": "x"}', "bad or missing argv"),
    ('{"argv": ["ls"], "cwd": "rel", "env": {}, "kind": "job", "stage": 1, "program": "ls"}', "bad or missing cwd"),
    ('{"argv": ["ls"], "cwd": "/", "env": {"A": 1}, "kind": "job", "stage": 1, "program": "ls"}', "bad or missing env"),
    ('{"argv": ["ls"], "cwd": "/", "env": {}, "kind": "gpu", "stage": 1, "program": "ls"}', "bad or missing kind"),
    ('{"argv": ["ls"], "cwd": "/", "env": {}, "kind": "job", "program": "ls"}', "bad or missing stage"),
    ('{"x": 1}', "bad or missing argv, cwd, env, kind, stage, program"),
    ('{"argv": ["ls"], "cwd": "/", "env": {}, "kind": "job", "stage": 2, "program": "ls"}', "out of order"),
    ('{"argv": ["ls"], "cwd": "/", "env": {}, "kind": "job", "stage": 1, "program": "ls"}\n'
     '{"argv": ["rm"], "cwd": "/", "env": {}, "kind": "job", "stage": 1, "program": "rm"}', "mixes programs"),
    ('{"argv": ["no_such_program_xyz"], "cwd": "/", "env": {}, "kind": "job", "stage": 1, "program": "x"}',
     "its program 'no_such_program_xyz' is not found"),
])
def test_a_damaged_job_list_is_one_error(line, message):
    with pytest.raises(UserError, match=re.escape(message)):
        jobs.read_job_list("a note\n" + line + "\n")


# ---- a fake table script, run --------------------------------------------------------------------------------
# (the script and its jobs' program: helpers.FAKE and helpers.JOB; every job appends to events.log)
@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake script and its work folder (WORKDIR: the jobs run there; logs in raid/sweeps/fake)."""
    script, work = make_fake(tmp_path)
    monkeypatch.setenv("WORKDIR", str(work))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("FOO", raising=False)
    return script, work


def run_sweep(script, *flags, capsys=None):
    rc = sweep.cli([str(script), "--gpus", "cpu", "--cpu_slots", "2", *flags] if "--gpus" not in flags
                   else [str(script), *flags])
    out = capsys.readouterr() if capsys else None
    return rc, out


def test_stages_run_in_order_jobs_in_parallel_with_logs(fake, capsys, monkeypatch):
    script, work = fake
    monkeypatch.setenv("SLEEP", "1.2")
    rc, out = run_sweep(script, capsys=capsys)
    assert rc == 0, out.out + out.err
    ev = events(work)
    # the two condensations overlap (2 CPU slots), every evaluation starts after both ended, the step last
    assert ev[("cond2", "start")] < ev[("cond1", "end")] and ev[("cond1", "start")] < ev[("cond2", "end")]
    last_cond = max(ev[("cond1", "end")], ev[("cond2", "end")])
    assert all(ev[(f"eval{k}", "start")] > last_cond for k in (1, 2, 3))
    assert ev[("summary", "start")] > max(ev[(f"eval{k}", "end")] for k in (1, 2, 3))
    logs = work / "raid" / "sweeps" / "fake"
    names = sorted(p.name for p in logs.glob("*.log"))
    assert names == ["s01-001-cond.log", "s01-002-cond.log", "s02-001-evalx.log", "s02-002-evalx.log",
                     "s02-003-evalx.log", "s03-001-report.log"]
    log = (logs / "s01-002-cond.log").read_text()
    assert "# python3 cond.py cond2 1.2 --device auto --save_dir 'runs/set 2'" in log  # the command, for people
    assert "argv ['cond2', '1.2', '--device', 'auto', '--save_dir', 'runs/set 2']" in log  # run as the job list says
    assert "CUDA_VISIBLE_DEVICES=''" in log and "# exit status 0" in log
    assert "CUDA_VISIBLE_DEVICES=None" in (logs / "s03-001-report.log").read_text()  # a step: the sweep's env
    assert len(list((logs / "done").glob("*.json"))) == 6
    assert "6 done, 0 skipped, 0 failed" in out.out
    assert re.search(r"start +s1 2/2 cond.py on cpu\d", out.out)
    assert re.search(r"done +s1 1/2 cond.py on cpu\d in \d+\.\d s", out.out)


def test_a_failure_stops_later_stages_and_a_rerun_skips_done_jobs(fake, capsys):
    script, work = fake
    (work / "fail_cond2").write_text("")
    rc, out = run_sweep(script, capsys=capsys)
    assert rc == 1
    assert "1 done, 0 skipped, 1 failed, 4 not run" in out.out
    log = work / "raid" / "sweeps" / "fake" / "s01-002-cond.log"
    assert "failed with rc 3: stage 1 #2 on cpu" in out.out and str(log) in out.out
    assert "python3 cond.py cond2 0 --device auto --save_dir 'runs/set 2'" in out.out
    assert "not run: stages 2, 3 (4 commands)" in out.out
    ev = events(work)
    assert ("cond1", "end") in ev and not any(k[0].startswith("eval") or k[0] == "summary" for k in ev)

    # fixed: the re-run skips cond1 (done), runs cond2 and the later stages
    (work / "fail_cond2").unlink()
    (work / "events.log").unlink()
    rc, out = run_sweep(script, capsys=capsys)
    assert rc == 0 and "5 done, 1 skipped, 0 failed" in out.out
    assert set(k[0] for k in events(work)) == {"cond2", "eval1", "eval2", "eval3", "summary"}

    # all done: nothing runs; --force runs everything again
    (work / "events.log").unlink()
    rc, out = run_sweep(script, capsys=capsys)
    assert rc == 0 and "0 done, 6 skipped, 0 failed" in out.out and not (work / "events.log").exists()
    rc, out = run_sweep(script, "--force", capsys=capsys)
    assert rc == 0 and "6 done, 0 skipped" in out.out and len(events(work)) == 12


def test_gpu_ids_are_assigned_one_job_each(fake, capsys):
    script, work = fake
    rc, out = run_sweep(script, "--gpus", "3,5", capsys=capsys)
    assert rc == 0, out.out + out.err
    logs = work / "raid" / "sweeps" / "fake"

    def visible(name):
        return re.search(r": CUDA_VISIBLE_DEVICES=(\S+) FOO", (logs / name).read_text()).group(1)

    assert {visible("s01-001-cond.log"), visible("s01-002-cond.log")} == {"'3'", "'5'"}  # one job per GPU at a time
    assert {visible(f"s02-00{k}-evalx.log") for k in (1, 2, 3)} <= {"'3'", "'5'"}
    assert visible("s03-001-report.log") == "None"  # a step keeps the sweep's environment
    assert re.search(r"on GPU [35]", out.out)


def test_environment_reaches_dry_run_and_jobs_and_keys_the_markers(fake, capsys, monkeypatch):
    script, work = fake
    monkeypatch.setenv("FOO", "bar")
    assert run_sweep(script, capsys=capsys)[0] == 0
    logs = work / "raid" / "sweeps" / "fake"
    assert "FOO='bar'" in (logs / "s01-001-cond.log").read_text()
    monkeypatch.setenv("FOO", "baz")  # same command text, another environment: not done
    rc, out = run_sweep(script, "--list", capsys=capsys)
    assert rc == 0 and "[done]" not in out.out and out.out.count("[pending]") == 6
    assert "done before in another environment (FOO differ)" in out.out
    monkeypatch.setenv("FOO", "bar")
    monkeypatch.setenv("PYTEST_EXTRA_NOISE", "1")  # a session variable does not count
    rc, out = run_sweep(script, "--list", capsys=capsys)
    assert out.out.count("[done]") == 6


def test_list_shows_stages_and_runs_nothing(fake, capsys):
    script, work = fake
    rc, out = run_sweep(script, "--list", capsys=capsys)
    assert rc == 0 and not (work / "events.log").exists() and not (work / "raid").exists()
    assert "6 commands in 3 stages, 0 done before" in out.out
    assert "stage 1: cond.py (2 jobs in parallel)" in out.out and "stage 3: report.py (1 step, serial)" in out.out
    assert "[pending] s02-003-evalx: python3 evalx.py eval3 0 --device auto --test_data_dir 'runs/set 1'" in out.out
    assert "3 other lines of the dry run are the script's notes" in out.out
    # --list needs no GPU: nothing is detected without --gpus
    rc, out = sweep.cli([str(script), "--list"]), capsys.readouterr()
    assert rc == 0


def test_ctrl_c_terminates_the_running_jobs(fake):
    script, work = fake
    env = dict(os.environ, SLEEP="60", PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "sweep.local", str(script), "--gpus", "cpu", "--cpu_slots", "2"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 20
        while sum(1 for k in events(work) if k[1] == "start") < 2:
            assert time.time() < deadline and p.poll() is None, "the jobs did not start"
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, out
    assert "2 interrupted" in out and "interrupted: stage 1" in out and "not run: stages 1, 2, 3" not in out
    assert "not run: stages 2, 3" in out
    pids = [int(x) for line in (work / "events.log").read_text().splitlines() for x in line.split()[3:5]]

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    time.sleep(0.2)
    assert pids and not any(alive(pid) for pid in pids)  # the jobs and their children are gone
    assert not list((work / "raid" / "sweeps" / "fake" / "done").glob("*.json"))


@pytest.mark.parametrize("flags,message", [
    (["--gpus", "0,,1"], "--gpus '0,,1': give GPU ids"),
    (["--gpus", "1,1"], "GPU 1 is listed twice"),
    (["--gpus", "0", "--cpu_slots", "2"], "--cpu_slots applies to --gpus cpu only"),
    (["--gpus", "cpu", "--cpu_slots", "0"], "--cpu_slots 0"),
    ([], "no GPU found"),
])
def test_bad_input_is_one_error_line(fake, capsys, monkeypatch, flags, message):
    script, work = fake
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi here (python3 and bash are)
    if not flags and sweep.shutil.which("nvidia-smi", path="/usr/bin:/bin"):
        pytest.skip("this machine has nvidia-smi in /usr/bin")
    rc = sweep.cli([str(script), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    if not flags:
        assert "--gpus cpu" in err  # the fix


def test_a_missing_script_or_a_failing_dry_run_is_an_error(tmp_path, capsys, monkeypatch):
    assert sweep.cli([str(tmp_path / "nope.sh"), "--gpus", "cpu"]) == 2
    assert "no script" in capsys.readouterr().err
    bad = tmp_path / "bad.sh"
    bad.write_text('echo "error: dataset foo is not known" >&2; exit 2\n')
    assert sweep.cli([str(bad), "--gpus", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "the dry run of" in err and "dataset foo is not known" in err
    empty = tmp_path / "empty.sh"
    empty.write_text('echo "nothing to do"\n')
    assert sweep.cli([str(empty), "--gpus", "cpu"]) == 2
    assert "printed no command" in capsys.readouterr().err
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert [s[1] for s in sweep.resolve_slots(None, None)] == ["2", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UserError, match="names no GPU"):
        sweep.resolve_slots(None, None)


def test_two_sweeps_cannot_share_a_logs_folder(fake, capsys):
    import fcntl
    script, work = fake
    logs = work / "raid" / "sweeps" / "fake"
    logs.mkdir(parents=True)
    with open(logs / ".sweep.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running sweep holds it
        rc, out = run_sweep(script, capsys=capsys)
    assert rc == 2 and "another sweep" in out.err and "--logs" in out.err and not (work / "events.log").exists()


def test_gpus_default_to_the_count_of_nvidia_smi(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aaa)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-bbb)'\n"
                   "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-ccc)'\n")
    smi.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    assert sweep.resolve_slots(None, None, env) == [("GPU 0", "0"), ("GPU 1", "1")]
    assert sweep.resolve_slots(None, None, dict(env, CUDA_VISIBLE_DEVICES="3")) == [("GPU 3", "3")]
    assert sweep.resolve_slots("cpu", 3, env) == [("cpu1", ""), ("cpu2", ""), ("cpu3", "")]


def test_a_command_ended_by_a_signal_is_stopped_not_failed():
    """Killed by a signal, or ended by our scripts' SIGTERM/Ctrl-C handler (exit 143/130): "stopped" (submit again:
    it resumes), never "failed"."""
    from sweep.slurm import stop_signal

    assert [stop_signal(rc) for rc in (-9, -15, 143, 130, 0, 1, 2, 3)] == [
        "SIGKILL", "SIGTERM", "SIGTERM", "SIGINT", None, None, None, None]
