"""Failure behaviour, through the real command lines (docs/failures.md).

Bad input: every case below exits with status 2 and one ``error:`` line naming the problem, prints no
traceback and leaves every file of the working folder as it was (nothing new, nothing changed).
Crashes: a ``kill -9`` of ``test.py --repeat 3`` resumes to the record of an uninterrupted run; a
kill between the record and the partial file's removal does not duplicate the record; temp files of
killed writers are cleaned; a full disk is a one-line error that keeps the previous files.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_cli, run_script
from fakedata import make_cifar, make_mnist_like

FAST = ["--device", "cpu"]
CONDENSE = ["-d", "cifar10", "--data_dir", "data", "--width", "0.125", "--niter", "1", "--inner_loop", "5",
            "--n_data", "16", "--batch_real", "8", "--ipc", "2", "--eval_during", "False", *FAST]


def save(path, obj):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(obj, path)


def truncate(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:len(data) // 2])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A working folder with fake data, condensed sets good and bad, and damaged run files."""
    w = tmp_path_factory.mktemp("world")
    cwd = os.getcwd()
    os.chdir(w)
    try:
        _build_world(w)
    finally:
        os.chdir(cwd)
    return w


def _build_world(w):
    make_cifar("data", 10, n_train=200, n_test=50)
    make_mnist_like(os.path.join("data", "FashionMNIST", "raw"))
    y = torch.arange(10).repeat_interleave(2)
    x = torch.rand(20, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    save("good.pt", [x, y])
    save("cond/data.pt", [x, y])
    save("empty.pt", [x[:0], y[:0]])
    for name, v in (("nan", float("nan")), ("inf", float("inf"))):
        bad = x.clone()
        bad[3, 0, 0, 0] = v
        save(f"{name}.pt", [bad, y])
    with open("afile", "w") as f:
        f.write("a regular file, used as a parent folder\n")
    with open("notjson.json", "w") as f:
        f.write("{not json")
    with open("broken.yaml", "w") as f:
        f.write("rules: [\n  - if: {dataset: cifar10\n")
    with open("norules.yaml", "w") as f:
        f.write("presets: []\n")
    # a score file and a dynamics log, cut in half
    import pickle
    with open("scores.pickle", "wb") as f:
        pickle.dump({"el2n": torch.rand(80).numpy()}, f)
    truncate("scores.pickle", "scores_cut.pickle")
    # real training dynamics (2 epochs) and their files cut in half
    run_cli("get_training_dynamics.py", "-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
            "--epochs", "2", "--data-dir", "data", *FAST, cwd=w)
    shutil.copy("dyn/ipc2/td-ipc2.pickle", "td.pickle")
    truncate("td.pickle", "td_cut.pickle")
    shutil.copy("dyn/ipc2/ckpt-last.pt", "ckpt.pt")
    truncate("ckpt.pt", "ckpt_cut.pt")
    # a real condensation run stopped after one iteration, and damaged copies of it
    run_cli("condense_reg.py", *CONDENSE, "--stop_after", "1", "--save_dir", "run", cwd=w)
    shutil.copytree("run", "run_cut")
    truncate("run/checkpoint.pt", "run_cut/checkpoint.pt")
    shutil.copytree("run", "run_nan")
    ck = torch.load("run/checkpoint.pt", weights_only=True)
    ck["data"][0, 0, 0, 0] = float("nan")
    torch.save(ck, "run_nan/checkpoint.pt")
    shutil.copytree("run", "run_ref")
    os.remove("run_ref/checkpoint.pt")
    with open("run_ref/it.pt", "wb") as f:
        f.write(b"garbage, not a torch file")


def snapshot(root):
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def refused(world, script, args, needle, status=2, runner=run_cli):
    before = snapshot(world)
    p = runner(script, *args, cwd=world, check=False)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == status, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert snapshot(world) == before, "a refused command changed the working folder"
    return lines[0]


TEST_PY = ["-d", "cifar10", "--data_dir", "data", "--epochs", "1", "--results_file", "r.json", *FAST]

CASES = [
    # (script, arguments, words of the message)
    ("test.py", ["--test_data_dir", "empty.pt", *TEST_PY], "holds no images"),
    ("test.py", ["--test_data_dir", "good.pt", "-f", "0", *TEST_PY], "--factor must be >= 1"),
    ("test.py", ["--test_data_dir", "good.pt", "-f", "-2", *TEST_PY], "--factor must be >= 1"),
    ("condense_reg.py", [*CONDENSE, "-f", "-2"], "--factor must be >= 1"),
    ("condense_reg_mp.py", [*CONDENSE, "--nclass_sub", "3", "--phase", "0"], "must divide --nclass 10"),
    ("test.py", ["--test_data_dir", "good.pt", "--ipc", "2", "--slct_ipc", "1", "--pruning_key", "random_sideways",
                 *TEST_PY], "unknown --pruning_key 'random_sideways'"),
    ("test.py", ["--test_data_dir", "nan.pt", "-f", "1", *TEST_PY], "NaN/Inf pixel"),
    ("test.py", ["--test_data_dir", "inf.pt", "-f", "1", *TEST_PY], "NaN/Inf pixel"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "afile/r.json"], "is not a folder"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "data"], "is a folder"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "notjson.json"], "not a JSON list"),
    ("test.py", ["--test_data_dir", "good.pt", "--save_subset", "afile/s.pt", *TEST_PY], "--save_subset"),
    ("condense_reg.py", [*CONDENSE, "--save_dir", "afile/run"], "--save_dir"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "afile/dyn",
                                  "--data-dir", "data", *FAST], "--base-dir"),
    ("generate_importance_score.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                      "--td-file", "td.pickle", "--ckpt", "ckpt.pt",
                                      "--custom-out-name", "afile/s.pickle", *FAST], "--custom-out-name"),
    ("test.py", ["--test_data_dir", "good.pt", "--ipc", "2", "--slct_ipc", "1", "--pruning_key", "el2n",
                 "--score_file", "scores_cut.pickle", "--no_resnet", *TEST_PY], "truncated or damaged"),
    ("generate_importance_score.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                      "--td-file", "td_cut.pickle", "--ckpt", "ckpt.pt", *FAST], "truncated or damaged"),
    ("generate_importance_score.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                      "--td-file", "td.pickle", "--ckpt", "ckpt_cut.pt", *FAST], "truncated, damaged"),
    ("condense_reg.py", [*CONDENSE, "--save_dir", "run_cut", "--resume"], "truncated, damaged"),
    ("condense_reg.py", [*CONDENSE, "--save_dir", "run_ref", "--resume"], "iteration file"),
    ("condense_reg.py", [*CONDENSE, "--save_dir", "run_nan", "--resume"], "NaN/Inf"),
    ("test.py", ["--test_data_dir", "good.pt", "--reproduce", "--presets", "broken.yaml", *TEST_PY], "not valid YAML"),
    ("test.py", ["--test_data_dir", "good.pt", "--reproduce", "--presets", "norules.yaml", *TEST_PY], "'rules'"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--ipc", "0", "--data-dir", "data", *FAST], "--ipc 0"),
    ("generate_importance_score.py", ["-d", "cifar10", "--ipc", "-1", *FAST], "--ipc -1"),
    # cases that were already refused before this file existed
    ("condense_reg.py", [*CONDENSE, "--data_dir", "missing"], "not found"),
    ("condense_reg.py", [*CONDENSE, "--ipc", "0"], "--ipc must be >= 1"),
    ("condense_reg.py", [*CONDENSE, "--ipc", "8", "-f", "2"], "fewer than block 0"),  # fails after loading data
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn2",
                                  "--data-dir", "missing", *FAST], "not found"),
    ("test.py", ["-s", "random", "--ipc", "1", "-d", "tinyimagenet", "--results_file", "r.json"], "unknown dataset"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--device", "cuda"] if not torch.cuda.is_available()
     else ["--test_data_dir", "good.pt", *TEST_PY, "--device", "tpu"], "--device"),
]


@pytest.mark.parametrize("script,args,needle", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_bad_input_is_refused_before_any_work(world, script, args, needle):
    refused(world, script, args, needle)


@pytest.mark.slow
@pytest.mark.parametrize("script,args,needle", list({c[0]: c for c in reversed(CASES)}.values()),  # first per script
                         ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else "")
def test_bad_input_through_the_shell(world, script, args, needle):
    """The same refusals through a new interpreter (one case per script): exit status 2 and one line on the
    real stderr, no traceback (the fast tier runs every case in process)."""
    refused(world, script, args, needle, runner=run_script)


# ---- crashes --------------------------------------------------------------------------------------

RANDOM_EVAL = ["-d", "fashion", "-s", "random", "--ipc", "10", "-f", "1", "--data_dir", "data", "--epochs", "8",
               "--deterministic", "True", *FAST]


def records(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.slow
def test_kill_9_during_repeats_resumes_to_the_uninterrupted_record(world):
    """``test.py --repeat 3`` killed with SIGKILL after its first repeat, then re-run: the same three
    networks (bit for bit on CPU, --deterministic True) and a wall time that counts both invocations."""
    run_script("test.py", *RANDOM_EVAL, "--repeat", "3", "--results_file", "whole.json", cwd=world)
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(ROOT, "test.py"), *RANDOM_EVAL, "--repeat", "3", "--results_file", "cut.json"]
    proc = subprocess.Popen(cmd, cwd=world, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    done, partial = 0, None
    while time.time() < deadline and proc.poll() is None:
        found = glob.glob(os.path.join(world, "cut.json.*.partial"))
        if found:
            partial = found[0]
            with open(partial) as f:
                st = json.load(f)
            done = len(st["runs"].get("convnet", []))
            if done >= 1:
                break
        time.sleep(0.02)
    assert proc.poll() is None and 1 <= done < 3, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    seconds_before = st["seconds"]
    assert not os.path.exists(os.path.join(world, "cut.json"))
    p = run_script("test.py", *RANDOM_EVAL, "--repeat", "3", "--results_file", "cut.json", cwd=world)
    assert "already done (resumed)" in p.stdout
    whole, cut = records(world / "whole.json")[-1], records(world / "cut.json")
    assert len(cut) == 1 and not os.path.exists(partial)
    a, b = whole["results"]["convnet"], cut[0]["results"]["convnet"]
    for ra, rb in zip(a["runs"], b["runs"]):
        assert (ra["best"], ra["last"], ra["curve"]) == (rb["best"], rb["last"], rb["curve"])
    assert a["best"] == b["best"] and a["last"] == b["last"] and len(b["runs"]) == 3
    assert len({json.dumps(r["curve"]) for r in b["runs"]}) == 3, "repeats must differ from each other"
    train_seconds = sum(r["seconds"] for r in b["runs"])
    assert cut[0]["wall_seconds"] >= train_seconds and cut[0]["wall_seconds"] > seconds_before


@pytest.mark.slow
def test_record_is_not_appended_twice(world):
    """A kill after the record was appended but before the partial file was removed: the re-run finds
    every repeat done and the record already there, and leaves the results file as it is."""
    from evaluation.records import PartialRuns
    from test import get_args_parser
    from utils.arguments import parse_args

    argv = [*RANDOM_EVAL, "--epochs", "1", "--repeat", "1", "--results_file", str(world / "once.json")]
    run_script("test.py", *argv, cwd=world)
    (rec,) = records(world / "once.json")
    st = PartialRuns(str(world / "once.json"), parse_args(get_args_parser(), argv))
    st.run_id = rec["run_id"]
    st.save("convnet", rec["results"]["convnet"]["runs"])  # the state at the moment of the kill
    p = run_script("test.py", *argv, cwd=world)
    assert "already in" in p.stdout and records(world / "once.json") == [rec]
    assert not os.path.exists(st.path) and not glob.glob(str(world / "once.json.*partial"))


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.slow
def test_stale_temp_files_are_cleaned_on_start(world, tmp_path):
    """Temp files of killed writers go; those of live jobs (this test process) and of another host stay."""
    from utils.files import clean_stale_temps

    host = socket.gethostname().replace("_", "-")
    names = {"dead": f".tmp_{host}_{_dead_pid()}_abc", "live": f".tmp_{host}_{os.getpid()}_def",
             "foreign": f".tmp_otherhost_{os.getpid()}_ghi", "user": "notes.txt"}
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    run_script("test.py", *RANDOM_EVAL, "--epochs", "1", "--repeat", "1", "--results_file", tmp_path / "r.json",
               cwd=world)
    left = set(os.listdir(tmp_path))
    assert names["dead"] not in left and {names["live"], names["foreign"], names["user"], "r.json"} <= left
    old = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / names["foreign"], (old, old))  # a day old on another host: gone too
    assert clean_stale_temps(str(tmp_path)) == [names["foreign"]]


SIM_FULL = '''
import os
_real_fdopen = os.fdopen
def _fdopen(fd, mode="r", *a, **k):
    try:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        name = ""
    if name.startswith(".tmp_") and "w" in mode:  # every atomic write lands on a full disk
        os.close(fd)
        return open("/dev/full", mode)
    return _real_fdopen(fd, mode, *a, **k)
os.fdopen = _fdopen
'''


@pytest.mark.skipif(not os.path.exists("/dev/full") or not os.path.isdir("/proc/self/fd"), reason="needs Linux")
@pytest.mark.slow
def test_disk_full_keeps_the_previous_files(world, tmp_path):
    """Every atomic write fails with ENOSPC (``/dev/full``): a one-line error that says the disk is full,
    the run's earlier files untouched, no temp file left."""
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "sitecustomize.py").write_text(SIM_FULL)
    shutil.copytree(world / "run", tmp_path / "run")
    before = {n: (tmp_path / "run" / n).read_bytes() for n in os.listdir(tmp_path / "run") if n.endswith(".pt")}
    env = {"PYTHONPATH": f"{sim}{os.pathsep}{ROOT}"}
    p = run_script("condense_reg.py", *CONDENSE, "--save_dir", tmp_path / "run", "--resume",
                   "--stop_after", "2", cwd=world, env=env, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: no space left on the device"), line
    after = {n: (tmp_path / "run" / n).read_bytes() for n in os.listdir(tmp_path / "run") if n.endswith(".pt")}
    assert after == before and not [n for n in os.listdir(tmp_path / "run") if n.startswith(".tmp_")]
    res = tmp_path / "r.json"
    res.write_text("[]")
    p = run_script("test.py", *RANDOM_EVAL, "--epochs", "1", "--repeat", "1", "--results_file", res, cwd=world,
                   env=env, check=False)
    assert p.returncode == 2 and "no space left" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert res.read_text() == "[]" and sorted(os.listdir(tmp_path)) == ["r.json", "run", "sim"]


def test_atomic_write_on_a_full_disk(tmp_path, monkeypatch):
    """Unit level: torch.save into a full disk becomes a UserError; the previous file stays."""
    import utils.files as files
    from utils.errors import UserError

    target = tmp_path / "x.pt"
    files.atomic_save({"a": torch.ones(3)}, str(target))
    good = target.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode="r", *a, **k: (os.close(fd), open("/dev/full", mode))[1]
                        if "w" in mode else real(fd, mode, *a, **k))
    with pytest.raises(UserError, match="no space left.*previous file is kept"):
        files.atomic_save({"a": torch.rand(100000)}, str(target))
    assert target.read_bytes() == good and os.listdir(tmp_path) == ["x.pt"]


def test_metrics_truncation_is_atomic(tmp_path, monkeypatch):
    """Resume drops metric lines after the checkpoint through a temp file + rename: the file is never cut."""
    import condensation.run_files as rf

    lines = [json.dumps({"it": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(6)]
    (tmp_path / rf.METRICS).write_text("".join(lines) + '{"it": 9, "lo')  # a line cut by a kill
    seen = []
    monkeypatch.setattr(rf, "atomic_write_text", lambda p, t: seen.append(p) or open(p, "w").write(t))
    rf.truncate_metrics(str(tmp_path), 3)
    assert seen == [str(tmp_path / rf.METRICS)]
    assert (tmp_path / rf.METRICS).read_text() == "".join(lines[:4])


def test_no_checkpoint_of_a_diverged_network(tmp_path):
    """A network holding NaN at a save point stops the run before anything is written, so the last
    checkpoint on disk is a good one (a resume refuses NaN checkpoints, see the cases above)."""
    from types import SimpleNamespace

    from condensation.loop import Condenser, DivergedError

    model = torch.nn.Linear(2, 2)
    model.weight.data[0, 0] = float("nan")
    stub = SimpleNamespace(model=model, save_dir=str(tmp_path), last_saved=3)
    stub._diverged = lambda what: Condenser._diverged(stub, what)
    with pytest.raises(DivergedError, match=r"NaN/Inf \(weight\).*iteration 3\) .* is intact"):
        Condenser.save_point(stub, 5)
    assert os.listdir(tmp_path) == []


def test_parallel_evaluations_sharing_a_results_file_keep_their_own_partial_file(tmp_path):
    """The IPC-y prefixes of a table share one results file and run in parallel under utils.sweep: each
    keeps its finished repeats in its own ``.partial`` file, and the same command finds its own again."""
    from evaluation.records import PartialRuns
    from test import get_args_parser
    from utils.arguments import parse_args

    base = ["-d", "fashion", "-f", "2", "--ipc", "4", "--test_type", "cx_cy", "--test_data_dir", "x"]
    results = str(tmp_path / "C.json")
    one, two = (PartialRuns(results, parse_args(get_args_parser(), [*base, "--ipcy", y])) for y in ("1", "2"))
    assert one.path != two.path and one.path.startswith(results + ".") and one.path.endswith(".partial")
    one.save("convnet", [{"best": 1.0}])
    two.save("convnet", [{"best": 2.0}, {"best": 3.0}])
    again = PartialRuns(results, parse_args(get_args_parser(), [*base, "--ipcy", "1"]))
    assert again.path == one.path and again.done == {"convnet": [{"best": 1.0}]}
