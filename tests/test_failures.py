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
import re
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
from helpers import refused, run_main, snapshot

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
    save("uint8.pt", [(x * 255).to(torch.uint8), y])  # integer pixels: refused, never trained as 0..255 floats
    save("int64.pt", [(x * 255).long(), y])
    save("cond1/data.pt", [x[::2], y[::2]])  # IPC 1
    for phase in (0, 1):  # the two partitions of a class-partitioned run at iteration 5
        save(f"parts_5_phase{phase}/data_5.pt", [x[phase * 10:(phase + 1) * 10], y[phase * 10:(phase + 1) * 10]])
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
    with open("scores_nan.pickle", "wb") as f:
        pickle.dump({"el2n": torch.full((80,), float("nan")).numpy()}, f)
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


TEST_PY = ["-d", "cifar10", "--data_dir", "data", "--epochs", "1", "--results_file", "r.json", *FAST]

CASES = [
    # (script, arguments, words of the message)
    ("test.py", ["--test_data_dir", "empty.pt", *TEST_PY], "holds no images"),
    ("test.py", ["--test_data_dir", "good.pt", "-f", "0", *TEST_PY], "--factor 0 is out of range"),
    ("test.py", ["--test_data_dir", "good.pt", "-f", "-2", *TEST_PY], "--factor -2 is out of range"),
    ("condense_reg.py", [*CONDENSE, "-f", "-2"], "--factor -2 is out of range"),
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
    # numbers outside their declared range (utils/ranges.py), refused before any data loads
    *[("test.py", ["--test_data_dir", "good.pt", *TEST_PY, flag, value], needle) for flag, value, needle in (
        ("--lr", "-0.1", "--lr -0.1 is out of range: pass a value > 0"),
        ("--momentum", "-1", "--momentum -1.0 is out of range"), ("--batch_size", "0", "--batch_size 0 is out"),
        ("--width", "0", "--width 0.0 is out of range"), ("--beta", "0", "--beta 0.0 is out of range"),
        ("--repeat", "0", "--repeat 0 is out of range"), ("--mix_p", "2", "--mix_p 2.0 is out of range"),
        ("--ipc", "0", "--ipc 0 is out of range: pass a value -1 or >= 1"), ("--ipc", "-5", "--ipc -5 is out"),
        ("--lr", "nan", "--lr nan: not a finite number"), ("--weight-decay", "inf", "--weight-decay inf: not a"),
        ("-f", "17", "-f 17: a 32-pixel image cannot hold 17x17 tiles"))],
    ("condense_reg.py", [*CONDENSE, "--batch_real", "0", "--save_dir", "fresh"], "--batch_real 0 is out of range"),
    ("condense_reg.py", [*CONDENSE, "--batch_syn_max", "0", "--save_dir", "fresh"], "--batch_syn_max 0 is out"),
    ("condense_reg.py", [*CONDENSE, "--lr_img", "nan", "--save_dir", "fresh"], "--lr_img nan: not a finite"),
    ("condense_reg.py", [*CONDENSE, "--lock_wait", "-2", "--save_dir", "fresh"],
     "--lock_wait -2 is out of range: pass a value -1 or >= 0"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn3",
                                  "--data-dir", "data", "--lock-wait", "-5", *FAST], "--lock-wait -5 is out of range"),
    ("condense_reg.py", [*CONDENSE, "-f", "40", "--save_dir", "fresh"], "use -f <= 16"),
    ("generate_importance_score.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                      "--batch-size", "0", *FAST], "--batch-size 0 is out of range"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn3",
                                  "--data-dir", "data", "--lr", "0", *FAST], "--lr 0.0 is out of range"),
    ("generate_importance_score.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                      "--topk", "0,3", *FAST], "--topk '0,3' must be a comma list"),
    ("data.partitions", ["parts", "--nclass_sub", "0", "--nclass", "10"], "--nclass_sub 0 is out of range"),
    # explicit requests are honoured or refused, never replaced
    ("test.py", ["--test_data_dir", "run", *TEST_PY, "--niter", "7"], "has no data_7.pt; it holds iterations"),
    ("data.partitions", ["parts", "--nclass_sub", "5", "--nclass", "10", "--niter", "7"], "has no data_7.pt"),
    ("data.partitions", ["parts", "--nclass_sub", "5", "--nclass", "10", "--out", "afile/m"], "pass another --out"),
    ("data.partitions", ["parts", "--nclass_sub", "5", "--nclass", "10", "--out", "parts_5_phase1/m"],
     "lies inside parts_5_phase1 (partition 1)"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--ipcy", "1"], "add --test_type cx_cy"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--pruning_key", "el2n"], "add --slct_ipc IPC_T"),
    ("test.py", ["-s", "random", "--ipc", "2", "--test_data_dir", "good.pt", *TEST_PY], "drop -s random"),
    ("test.py", ["--test_data_dir", "cond", "--test_type", "baseline_b", "--ipc", "2", "--ipcy", "2", *TEST_PY],
     "holds 2 images per class, not 1; baseline_b evaluates separate IPC-1 runs"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--condense_key", "mtt", "-f", "2"], "single-formation"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "-d", "imagenet", "-n", "convnet"], "ResNetAP instead"),
    ("condense_reg.py", [*CONDENSE, "--depth", "5", "--save_dir", "fresh"], "ConvNet-3 for any depth above 4"),
    ("condense_reg.py", [*CONDENSE, "-f", "2", "--init", "random", "--save_dir", "fresh"], "--init mix"),
    ("test.py", ["--test_data_dir", "good.pt", "--ipc", "2", "--slct_ipc", "1", "--pruning_key", "el2n",
                 "--prune_score_ratio", "0.2", "--score_file", "scores.pickle", "--no_resnet", *TEST_PY],
     "--prune_score_ratio 0.2 would have no effect"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--size", "64"], "--size 64: cifar10 has 32"),
    ("condense_reg.py", [*CONDENSE, "--nclass", "20", "--save_dir", "fresh"], "--nclass 20: cifar10 has 10"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--dsa_strategy", "color_bogus"], "unknown op 'bogus'"),
    ("condense_reg.py", [*CONDENSE, "-a", "crop_twist", "--save_dir", "fresh"], "unknown op 'twist'"),
    ("condense_reg.py", [*CONDENSE, "--f_idx", "abc", "--save_dir", "fresh"], "--f_idx abc: a feature layer"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn3",
                                  "--data-dir", "data", "--dsa_strategy", "zoom", *FAST], "unknown op 'zoom'"),
    # outputs never overwrite inputs or other runs
    ("condense_reg.py", [*CONDENSE, "--save_dir", "run"], "holds another condensation run"),
    ("condense_reg.py", [*CONDENSE, "--save_dir", "data/cifar-10-batches-py/run"], "lies inside data/cifar-10"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--save_subset", "good.pt"], "--save_subset good.pt is good"),
    ("test.py", ["--test_data_dir", "cond", *TEST_PY, "--save_subset", "cond/s.pt"], "lies inside cond"),
    ("test.py", ["--test_data_dir", "cond", *TEST_PY, "--results_file", "cond/data.pt"], "--results_file cond/data"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--save_subset", "r.json"], "is r.json (the results"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                  "--data-dir", "data", *FAST], "holds another dynamics run"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "cond",
                                  "--data-dir", "data", *FAST], "is cond (--custom-data-dir)"),
    ("generate_importance_score.py", ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn",
                                      "--td-file", "td.pickle", "--ckpt", "ckpt.pt", "--custom-out-name", "td.pickle",
                                      *FAST], "is td.pickle (the dynamics log)"),
    ("test.py", ["--test_data_dir", "good.pt", "--ipc", "2", "--slct_ipc", "1", "--pruning_key", "el2n",
                 "--score_file", "scores_nan.pickle", "--no_resnet", *TEST_PY], "holds 80 NaN/Inf values of 80"),
    # condensed sets are floating point
    ("test.py", ["--test_data_dir", "uint8.pt", *TEST_PY], "stores uint8 pixels"),
    ("test.py", ["--test_data_dir", "int64.pt", *TEST_PY], "stores int64 pixels"),
    ("get_training_dynamics.py", ["-d", "cifar10", "--custom-data-dir", "uint8.pt", "--base-dir", "dyn4",
                                  "--data-dir", "data", *FAST], "stores uint8 pixels"),
    # cases that were already refused before this file existed
    ("condense_reg.py", [*CONDENSE, "--data_dir", "missing"], "not found"),
    ("condense_reg.py", [*CONDENSE, "--ipc", "0"], "--ipc 0 is out of range"),
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
    """``test.py --repeat 2`` killed with SIGKILL after its first repeat, then re-run: the same two
    networks (bit for bit on CPU, --deterministic True) and a wall time that counts both invocations."""
    run_script("test.py", *RANDOM_EVAL, "--repeat", "2", "--results_file", "whole.json", cwd=world)
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(ROOT, "test.py"), *RANDOM_EVAL, "--repeat", "2", "--results_file", "cut.json"]
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
    assert proc.poll() is None and done == 1, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    seconds_before = st["seconds"]
    assert not os.path.exists(os.path.join(world, "cut.json"))
    p = run_script("test.py", *RANDOM_EVAL, "--repeat", "2", "--results_file", "cut.json", cwd=world)
    assert "already done (resumed)" in p.stdout
    whole, cut = records(world / "whole.json")[-1], records(world / "cut.json")
    assert len(cut) == 1 and not os.path.exists(partial)
    a, b = whole["results"]["convnet"], cut[0]["results"]["convnet"]
    for ra, rb in zip(a["runs"], b["runs"]):
        assert (ra["best"], ra["last"], ra["curve"]) == (rb["best"], rb["last"], rb["curve"])
    assert a["best"] == b["best"] and a["last"] == b["last"] and len(b["runs"]) == 2
    assert len({json.dumps(r["curve"]) for r in b["runs"]}) == 2, "repeats must differ from each other"
    train_seconds = sum(r["seconds"] for r in b["runs"])
    assert cut[0]["wall_seconds"] >= train_seconds and cut[0]["wall_seconds"] > seconds_before


@pytest.mark.slow
def test_record_is_not_appended_twice(world):
    """A kill after the record was appended but before the partial file was removed: the re-run finds
    every repeat done and the record already there, and leaves the results file as it is."""
    from evaluation.records import PartialRuns
    from test import get_args_parser
    from cli.arguments import parse_args

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

    lines = [json.dumps({"type": "loss", "it": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(6)]
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
    """The IPC-y prefixes of a table share one results file and run in parallel under sweep.local: each
    keeps its finished repeats in its own ``.partial`` file, and the same command finds its own again."""
    from evaluation.records import PartialRuns
    from test import get_args_parser
    from cli.arguments import parse_args

    base = ["-d", "fashion", "-f", "2", "--ipc", "4", "--test_type", "cx_cy", "--test_data_dir", "x"]
    results = str(tmp_path / "C.json")
    one, two = (PartialRuns(results, parse_args(get_args_parser(), [*base, "--ipcy", y])) for y in ("1", "2"))
    assert one.path != two.path and one.path.startswith(results + ".") and one.path.endswith(".partial")
    one.save("convnet", [{"best": 1.0}])
    two.save("convnet", [{"best": 2.0}, {"best": 3.0}])
    again = PartialRuns(results, parse_args(get_args_parser(), [*base, "--ipcy", "1"]))
    assert again.path == one.path and again.done == {"convnet": [{"best": 1.0}]}


# ---- malformed files named for what they are, checks before any work, strict JSON ----------------------
# (docs/failures.md: "Bad input is refused before any work", "Loading a file never runs code", "Records are
# strict JSON"). Files of these cases live under ``bad/`` in the world folder.

class _Evil:
    """Loading an object of this class would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


MARKER = "bad/pwned"  # must never appear


def _record(**args):
    """A minimal test.py record (what evaluation.records.make_record writes and evaluation.report reads)."""
    a = dict(ipc=1, ipcy=-1, dataset="cifar10", nclass=10, factor=2, run_tag="", slct_ipc=0, condense_key="idc")
    a.update(args)
    return {"run_id": "r1", "test_type": "other", "n_train": 40, "args": a,
            "results": {"convnet": {"runs": [{"best": 50.0, "last": 49.0}], "best": {"mean": 50.0, "std": 0.0}}}}


@pytest.fixture(scope="module")
def bad(world):
    """The malformed inputs of this section, written into ``world/bad`` (and damaged run folders next to ``run``)."""
    import pickle

    from yoco.dynamics_io import load_dynamics, save_compact

    cwd = os.getcwd()
    os.chdir(world)
    try:
        os.makedirs("bad/dirset/data.pt")  # a set folder whose data.pt is a folder
        os.makedirs("bad/afolder")
        x, y = torch.load("good.pt", weights_only=True)
        torch.save([x.numpy(), y.numpy()], "bad/np.pt")  # numpy arrays, not tensors
        torch.save([x, y, _Evil(world / MARKER)], "bad/evil.pt")  # code
        torch.save(torch.nn.Linear(2, 2), "bad/model.pt")  # a whole module, not a state_dict
        with open("bad/plain.pickle", "wb") as f:  # pickle.dump, not torch.save
            pickle.dump([x, y], f)
        with open("bad/evil.pickle", "wb") as f:
            pickle.dump({"training_dynamics": _Evil(world / MARKER)}, f)
        with open("bad/garbage.pt", "wb") as f:
            f.write(b"just some text\n" * 20)
        open("bad/empty.pt", "wb").close()
        # results files that are JSON but not lists of records
        for name, doc in (("ints", [1, 2]), ("norecord", [{"a": 1}]), ("object", {"a": 1}),
                          ("noresults", [{"args": {}, "run_id": "x"}]), ("good", [_record()])):
            with open(f"bad/{name}.json", "w") as f:
                json.dump(doc, f)
        os.makedirs("bad/folder_results")
        with open("bad/folder_results/test_results.json", "w") as f:
            f.write("[{\"args\": ")
        # condensation runs with a damaged file each
        for name, fname, text in (("run_badyaml", "args.yaml", "dataset: [cifar10\nipc: 2\n"),
                                  ("run_listyaml", "args.yaml", "- dataset\n- cifar10\n"),
                                  ("run_badmetrics", "metrics.jsonl", "{\"type\": \"loss\", \"it\": 1}\n"
                                                                       "\x00\x00garbage\n{\"type\": \"loss\", \"it\": 2}\n")):
            shutil.copytree("run", name)
            with open(os.path.join(name, fname), "w") as f:
                f.write(text)
        shutil.copytree("run", "run_np")
        ck = torch.load("run/checkpoint.pt", weights_only=True)
        ck["data"] = ck["data"].numpy()
        torch.save(ck, "run_np/checkpoint.pt")
        # the dynamics log as a compact file; both were recorded on the 80 decoded images of cond/ (f = 2)
        save_compact("bad/td.pt", "cifar10", load_dynamics("td.pickle")["training_dynamics"])
    finally:
        os.chdir(cwd)
    return world


GIS = ["-d", "cifar10", "--custom-data-dir", "cond", "--base-dir", "dyn", "--ckpt", "ckpt.pt", *FAST]
CONDENSE_RESUME = [*CONDENSE, "--resume", "--save_dir"]

BAD_FILE_CASES = [
    # torch files (utils.files.load_torch): what the file is, never torch's own text
    ("test.py", ["--test_data_dir", "bad/np.pt", *TEST_PY], "holds numpy arrays"),
    ("test.py", ["--test_data_dir", "bad/evil.pt", *TEST_PY], "refers to code (posix.system)"),
    ("test.py", ["--test_data_dir", "bad/plain.pickle", *TEST_PY], "plain Python pickle (pickle.dump), not a torch"),
    ("test.py", ["--test_data_dir", "bad/dirset", *TEST_PY], "data.pt is a folder, not a file"),
    ("test.py", ["--test_data_dir", "bad/garbage.pt", *TEST_PY], "is not a torch file"),
    ("test.py", ["--test_data_dir", "bad/empty.pt", *TEST_PY], "is empty (0 bytes)"),
    ("generate_importance_score.py", [*GIS[:-4], "--td-file", "td.pickle", "--ckpt", "bad/model.pt", *FAST],
     "state_dict(), not the model"),
    ("condense_reg.py", [*CONDENSE_RESUME, "run_np"], "holds numpy arrays"),
    # pickles (utils.safe_pickle): code refused as code, a folder as a folder
    ("generate_importance_score.py", [*GIS, "--td-file", "bad/evil.pickle"], "refers to the code posix.system"),
    ("generate_importance_score.py", [*GIS, "--td-file", "bad/afolder"], "is a folder, not a file"),
    ("test.py", ["--test_data_dir", "good.pt", "--ipc", "2", "--slct_ipc", "1", "--pruning_key", "el2n",
                 "--score_file", "bad/afolder", "--no_resnet", *TEST_PY], "is a folder, not a file"),
    # results files that are JSON but not records: refused before any work, nothing appended
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "bad/ints.json"], "item 0 is 1, not a record"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "bad/norecord.json"],
     "not a record of test.py"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "bad/object.json"], "holds an object"),
    ("test.py", ["--test_data_dir", "good.pt", *TEST_PY, "--results_file", "bad/noresults.json"], "'results'"),
    # damaged files of a condensation run on --resume
    ("condense_reg.py", [*CONDENSE_RESUME, "run_badyaml"], "run_badyaml/args.yaml is not valid YAML at line"),
    ("condense_reg.py", [*CONDENSE_RESUME, "run_listyaml"], "holds a YAML list, not a mapping"),
    ("condense_reg.py", [*CONDENSE_RESUME, "run_badmetrics"], "metrics.jsonl is damaged: line 2"),
    # a dynamics log of another set (the log: 80 decoded images of cond/ with f = 2; --factor 1 decodes 20)
    ("generate_importance_score.py", [*GIS, "--td-file", "td.pickle", "--factor", "1"], "cover 80 samples of 10 classes "
     "but the (decoded) set has 20 samples of 10 classes: they were recorded on another set; re-run "
     "get_training_dynamics.py"),
    ("generate_importance_score.py", [*GIS, "--td-file", "bad/td.pt", "--factor", "1"], "--td-file of this set"),
]


@pytest.mark.parametrize("script,args,needle", BAD_FILE_CASES, ids=[f"{c[0]}:{c[2][:40]}" for c in BAD_FILE_CASES])
def test_malformed_files_are_named_for_what_they_are(bad, script, args, needle):
    line = refused(bad, script, args, needle)
    assert "\x1b" not in line and "Weights only load failed" not in line and "WeightsUnpickler" not in line
    assert not os.path.exists(bad / MARKER)


def test_load_torch_classifies_every_bad_file(tmp_path):
    """Unit level: each kind of bad torch file gets its own one-line message (no torch text, no colour codes)."""
    import pickle
    import zipfile

    from utils.errors import UserError
    from utils.files import load_torch

    t = torch.arange(6.0)
    torch.save({"a": t}, tmp_path / "good.pt")
    torch.save({"a": t}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"a": t.numpy()}, tmp_path / "np.pt")
    torch.save({"a": _Evil(tmp_path / "pwned")}, tmp_path / "code.pt")
    data, legacy = (tmp_path / "good.pt").read_bytes(), (tmp_path / "legacy.pt").read_bytes()
    flipped = bytearray(data)
    flipped[data.index(b"_rebuild_tensor") + 3] ^= 1  # a damaged byte inside the archive (CRC mismatch)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("notes/readme.txt", "hello")
    files = {"cut.pt": data[:len(data) // 2], "cut_legacy.pt": legacy[:len(legacy) // 2], "cut_head.pt": data[:3],
             "flipped.pt": bytes(flipped), "plain.pickle": pickle.dumps({"a": t}, protocol=4),
             "code.pickle": pickle.dumps(_Evil(tmp_path / "pwned"), protocol=4), "text.pt": b"hello world\n",
             "empty.pt": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    np_file = tmp_path / "array.npy"
    import numpy as np
    np.save(np_file, np.zeros(3))
    (tmp_path / "folder.pt").mkdir()
    want = {"good.pt": None, "legacy.pt": None,
            "np.pt": "holds numpy arrays or other numpy objects (numpy",
            "code.pt": "refers to code (posix.system) that loading it would run, so it is refused",
            "cut.pt": "the file is truncated, damaged or was not completely written",
            "cut_legacy.pt": "the file is truncated, damaged", "cut_head.pt": "the file is truncated, damaged",
            "flipped.pt": "the file is truncated, damaged", "other.zip": "a zip archive but not a torch file",
            "plain.pickle": "plain Python pickle (pickle.dump), not a torch file (torch.save)",
            "code.pickle": "plain Python pickle (pickle.dump), not a torch file, and it refers to code (posix.system)",
            "text.pt": "it is not a torch file", "empty.pt": "it is empty (0 bytes)",
            "array.npy": "numpy .npy file (numpy.save), not a torch file", "folder.pt": "is a folder, not a file",
            "missing.pt": "not found"}
    for name, needle in want.items():
        path = str(tmp_path / name)
        if needle is None:
            assert torch.equal(load_torch(path, "test file", "fix it")["a"], t)
            continue
        with pytest.raises(UserError) as e:
            load_torch(path, "test file", "fix it")
        msg = str(e.value)
        assert needle in msg and msg.endswith("; fix it") and path in msg, (name, msg)
        assert "\n" not in msg and "\x1b" not in msg and "weights_only" not in msg, (name, msg)
    assert not (tmp_path / "pwned").exists()


def test_restricted_unpickler_tells_code_from_damage(tmp_path):
    """``utils.safe_pickle``: a pickle naming code is refused as code; one cut short or with a garbled name is
    "truncated or damaged", never "code"; protocol 0-2 pickles of arrays (bytes as ``_codecs.encode``) load."""
    import pickle

    import numpy as np

    from utils.errors import UserError
    from utils.safe_pickle import load_pickle

    scores = {"el2n": np.arange(5, dtype=np.float32), "t": torch.arange(3.0), "raw": b"\x00\xff", "s": {1, 2}}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):  # the reference's files may use any protocol
        (tmp_path / "s.pickle").write_bytes(pickle.dumps(scores, protocol=proto))
        back = load_pickle(str(tmp_path / "s.pickle"), "score file")
        assert np.array_equal(back["el2n"], scores["el2n"]) and back["raw"] == b"\x00\xff" and back["s"] == {1, 2}
    code = pickle.dumps({"el2n": _Evil(tmp_path / "pwned")}, protocol=2)
    data = pickle.dumps(scores, protocol=2)
    name = data.index(b"_reconstruct")
    cases = {"code": (code, "refused to load this score file: it refers to the code posix.system"),
             "cut_in_name": (data[:name + 5], "truncated or damaged"),
             "cut": (data[:len(data) // 2], "truncated or damaged"),
             "garbled_name": (data[:name] + b"_reconstrXct" + data[name + 12:], "truncated or damaged"),
             "torch_file": (None, "is a zip archive (a torch file?), not a pickled score file"),
             "empty": (b"", "is empty (0 bytes)")}
    for case, (content, needle) in cases.items():
        path = tmp_path / f"{case}.pickle"
        if content is None:
            torch.save(scores["t"], path)
        else:
            path.write_bytes(content)
        with pytest.raises(UserError) as e:
            load_pickle(str(path), "score file")
        assert needle in str(e.value) and "\n" not in str(e.value), (case, str(e.value))
        assert case == "code" or "refused" not in str(e.value), (case, str(e.value))
    assert not (tmp_path / "pwned").exists()


def test_read_jsonl_skips_only_a_cut_last_line(tmp_path):
    from utils.errors import UserError
    from utils.files import read_jsonl

    p = tmp_path / "metrics.jsonl"
    good = '{"it": 1}\n{"it": 2}\n'
    for tail in ("", '{"it": 3, "lo', "\n\n"):  # a kill cuts the last line: skipped; blank lines: ignored
        p.write_text(good + tail)
        assert read_jsonl(str(p)) == [{"it": 1}, {"it": 2}]
    for text, line in (('{"it": 1}\n{"it": 2\n{"it": 3}\n', 2),  # a cut line followed by more: damaged
                       ('{"it": 1}\n[1, 2]\n', 2),  # JSON, but not an object
                       ('{"it": 1}\n\x00\x00\x00', 2),  # a last "line" that is no object's start
                       ("garbage", 1)):
        p.write_text(text)
        with pytest.raises(UserError, match=rf"metrics.jsonl is damaged: line {line} is not a JSON object; remove"):
            read_jsonl(str(p))


REPORT_CASES = [
    (["mdc1", "bad/ints.json"], "bad/ints.json is not a results file of test.py: not a JSON list of records "
                                "(item 0 is 1, not a record"),
    (["mdc1", "bad/norecord.json"], "not a record of test.py"),
    (["mdc1", "bad/folder_results"], "test_results.json is not a results file of test.py"),
    (["mdc10", "run_badmetrics"], "metrics.jsonl is damaged: line 2 is not a JSON object"),
    (["mdc10", "run_badyaml"], "args.yaml is not valid YAML"),
    # the output is checked before the table is printed
    (["mdc1", "bad/good.json", "--out", "bad/good.json"], "--out bad/good.json is one of the report's input files"),
    (["mdc1", "bad/good.json", "--out", "afile"], "exists and is not a folder; pass another --out"),
    (["mdc1", "bad/good.json", "--out", "afile/report"], "afile is not a folder; pass another --out"),
    (["prefix", "bad/good.json", "--plot", "bad/good.json"], "--plot bad/good.json: the plot is an image"),
    (["prefix", "bad/good.json", "--plot", "bad/afolder"], "is a folder; pass a file name to --plot"),
]


@pytest.mark.parametrize("argv,needle", REPORT_CASES, ids=[" ".join(c[0]) for c in REPORT_CASES])
def test_report_refuses_bad_inputs_and_outputs_before_printing(bad, argv, needle):
    p = run_main("evaluation.report", *argv, cwd=bad)
    assert p.stdout == "", "the table was printed before the refusal"
    refused(bad, "evaluation.report", argv, needle, runner=run_main)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere")
def test_report_refuses_an_unwritable_out(bad, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        p = run_main("evaluation.report", "mdc1", str(bad / "bad/good.json"), "--out", str(ro / "report"), cwd=bad)
    finally:
        ro.chmod(0o755)
    assert p.returncode == 2 and p.stdout == "" and "is not writable" in p.stderr and not (ro / "report").exists()


def test_report_rewrites_its_own_outputs(bad, tmp_path):
    """Its own files in --out are regenerated from the records on every run (the table scripts re-run it)."""
    for _ in range(2):
        p = run_main("evaluation.report", "mdc1", str(bad / "bad/good.json"), "--out", str(tmp_path / "r"), cwd=bad)
        assert p.returncode == 0, p.stderr
    assert {"mdc1.csv", "mdc1.md"} <= set(os.listdir(tmp_path / "r")) <= {"mdc1.csv", "mdc1.md", "mdc1.png"}


def test_results_files_are_checked_by_one_function(tmp_path):
    """test.py's check (``read_records``) and the report read results files through ``load_records``."""
    from evaluation import records, report
    from utils.errors import UserError

    for doc in ([1, 2], [{"a": 1}], {"a": 1}, [{"args": {}, "results": 3}]):
        (tmp_path / "r.json").write_text(json.dumps(doc))
        for reader in (records.read_records, lambda p: report.load_cells(report.TABLES["mdc1"], [p])):
            with pytest.raises(UserError, match="is not a results file of test.py: not a JSON list of records"):
                reader(str(tmp_path / "r.json"))
    (tmp_path / "r.json").write_text(json.dumps([_record()]))
    assert records.read_records(str(tmp_path / "r.json")) == [_record()]


def test_eval_nets_are_checked_before_any_work():
    """``evaluation.protocol.check_eval_nets``: unknown names, a model that does not fit the data, an empty or
    repeated list are refused; the check builds nothing real and draws no random number."""
    from evaluation.protocol import check_eval_nets
    from test import get_args_parser
    from cli.arguments import parse_args
    from utils.errors import UserError

    def args(*a):
        return parse_args(get_args_parser(), ["-d", "cifar10", "--test_data_dir", "x", *a])

    state = torch.get_rng_state()
    assert check_eval_nets(args()) == ["default"]
    assert check_eval_nets(args("--eval_net", "convnet, resnet10_bn,densenet")) == ["convnet", "resnet10_bn",
                                                                                   "densenet"]
    assert check_eval_nets(args("--slct_ipc", "1", "--ipc", "2")) == ["default", "resnet10_bn", "densenet"]
    assert torch.equal(torch.get_rng_state(), state)
    for value, needle in (("convnet,resnet99", "--eval_net: unknown model 'resnet99'; known models: convnet"),
                          ("efficientnet_b0", "EfficientNet is not re-implemented"),
                          ("resnet", "--eval_net: model 'resnet': ResNet depth 3 too small"),
                          (" , ", "names no network"), ("convnet,densenet,convnet", "names convnet twice")):
        with pytest.raises(UserError, match=re_escape(needle)):
            check_eval_nets(args("--eval_net", value))


def re_escape(s):
    return re.escape(s)


@pytest.mark.parametrize("nets,needle", [("convnet,resnet99", "unknown model 'resnet99'"),
                                         ("convnet,convnet", "names convnet twice")])
def test_unknown_eval_net_is_refused_before_training(world, nets, needle):
    refused(world, "test.py", ["--test_data_dir", "good.pt", "--eval_net", nets, *TEST_PY], needle)


def test_records_are_strict_json(tmp_path):
    """No NaN/Infinity in any JSON file: a non-finite number is written as null (``utils.config.to_json``)."""
    from types import SimpleNamespace

    import condensation.run_files as rf
    from evaluation.records import PartialRuns, append_record, make_record
    from utils.files import append_jsonl

    def strict(text):
        def refuse(c):
            raise AssertionError(f"non-strict JSON constant {c}")
        return json.loads(text, parse_constant=refuse)

    nan, inf = float("nan"), float("inf")
    args = SimpleNamespace(test_type="other", lr=nan, results_file="r.json", explicit=[])
    res = {"convnet": {"runs": [{"best": nan, "last": inf, "curve": [[1, -inf]]}], "best": {"mean": nan, "std": nan}}}
    rec = make_record(args, torch.device("cpu"), "x", 10, res, inf)
    path = str(tmp_path / "r.json")
    assert append_record(path, rec)
    (back,) = strict((tmp_path / "r.json").read_text())
    assert back["results"]["convnet"]["runs"][0] == {"best": None, "last": None, "curve": [[1, None]]}
    assert back["wall_seconds"] is None and back["args"]["lr"] is None
    part = PartialRuns(path, args)
    part.save("convnet", res["convnet"]["runs"])
    assert strict(open(part.path).read())["runs"]["convnet"][0]["best"] is None
    append_jsonl(str(tmp_path / rf.METRICS), {"type": "loss", "it": 1, "loss": 1.0, "sec_per_it": inf})
    rf.truncate_metrics(str(tmp_path), 5)  # rewritten on resume: strict as well
    assert strict((tmp_path / rf.METRICS).read_text()) == {"type": "loss", "it": 1, "loss": 1.0, "sec_per_it": None}
