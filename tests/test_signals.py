"""SIGTERM is handled as Ctrl-C (docs/failures.md#an-interruption-is-one-line): one ``error: interrupted`` line
saying what was kept and the command that resumes, the same resumable state, exit 143 (Ctrl-C: 130).

The fast tier tests the handler of ``cli.arguments.cli`` in process; the slow tier sends a real SIGTERM to a
running test.py, condensation and dynamics run on fake CIFAR and re-runs the advised command to the end.
"""
import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_script, script_env
from fakedata import make_cifar, make_mnist_like

from cli.arguments import Terminated, cli, interrupt_note, rerun


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--resume", action="store_true")
    return p


def _run(capsys, main, argv=()):
    with pytest.raises(SystemExit) as e:
        cli(main, _parser, list(argv))
    return e.value.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_sigterm_is_one_line_and_exit_143(capsys):
    def main(args):
        interrupt_note(lambda: f"the checkpoint of iteration 7 is kept in run; {rerun('--resume')} to continue")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts the sleep
        raise AssertionError("SIGTERM did not interrupt the run")

    before = signal.getsignal(signal.SIGTERM)
    t0 = time.monotonic()
    code, lines = _run(capsys, main)
    assert time.monotonic() - t0 < 5
    assert code == 143 and lines == ["error: interrupted by SIGTERM; the checkpoint of iteration 7 is kept in run; "
                                     "re-run the same command with --resume to continue"], lines
    assert signal.getsignal(signal.SIGTERM) == before, "cli() must restore the caller's SIGTERM handler"


def test_ctrl_c_is_the_same_line_and_exit_130(capsys):
    def main(args):
        interrupt_note(lambda: f"3 finished repeats kept in r.partial; {rerun('--resume')} to continue")
        raise KeyboardInterrupt

    code, lines = _run(capsys, main, ["--resume"])  # the command has --resume already: the same command
    assert code == 130 and lines == ["error: interrupted; 3 finished repeats kept in r.partial; re-run the same "
                                     "command to continue"], lines


def test_nothing_kept_and_a_broken_note_still_give_one_line(capsys):
    def early(args):
        raise Terminated()

    code, lines = _run(capsys, early)
    assert code == 143 and lines == ["error: interrupted by SIGTERM; nothing was kept; re-run the same command to "
                                     "start again"]

    def broken(args):
        interrupt_note(lambda: 1 / 0)
        raise KeyboardInterrupt

    code, lines = _run(capsys, broken)
    assert code == 130 and len(lines) == 1 and "nothing was kept" in lines[0]


def test_the_tracker_process_ignores_sigterm():
    """Slurm signals every process of the job: the tracker child leaves SIGTERM to the run, which closes it."""
    import inspect

    from tracking import backends

    src = inspect.getsource(backends.serve)
    assert "signal.signal(signal.SIGTERM, signal.SIG_IGN)" in src and "signal.signal(signal.SIGINT, signal.SIG_IGN)" in src


# ---- a real SIGTERM to running scripts ------------------------------------------------------------------------


def _start(script, args, cwd):
    cmd = [sys.executable, os.path.join(ROOT, script), *map(str, args)]
    return subprocess.Popen(cmd, cwd=cwd, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _term_when(proc, ready, timeout=120):
    """SIGTERM ``proc`` as soon as ``ready()``; its (returncode, stderr lines)."""
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, "the run ended before it could be stopped: " + proc.communicate()[1][-2000:]
        assert time.monotonic() - t0 < timeout, "the run never reached the point to stop it"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, [ln for ln in err.splitlines() if ln.strip()]


def _partial_runs(world, name):
    for p in glob.glob(os.path.join(world, name + ".*.partial")):
        try:
            with open(p) as f:
                return len(json.load(f)["runs"].get("convnet", []))
        except (OSError, ValueError):
            pass
    return 0


@pytest.mark.slow
def test_sigterm_to_test_py_keeps_the_finished_repeats(tmp_path):
    make_mnist_like(str(tmp_path / "data" / "FashionMNIST" / "raw"))
    args = ["-d", "fashion", "-s", "random", "--ipc", "10", "-f", "1", "--data_dir", "data", "--epochs", "6",
            "--repeat", "2", "--device", "cpu", "--results_file", "r.json"]
    code, lines = _term_when(_start("test.py", args, tmp_path), lambda: _partial_runs(tmp_path, "r.json") >= 1)
    assert code == 143 and len(lines) == 1, lines
    assert lines[0].startswith("error: interrupted by SIGTERM; 1 finished repeat kept in ") and \
        lines[0].endswith(".partial; re-run the same command to continue after them"), lines
    p = run_script("test.py", *args, cwd=tmp_path)  # the advised command: the same one
    assert "1 of 2 repeats already done (resumed)" in p.stdout
    with open(tmp_path / "r.json") as f:
        assert len(json.load(f)[0]["results"]["convnet"]["runs"]) == 2


@pytest.mark.slow
def test_sigterm_to_a_condensation_keeps_its_checkpoint(tmp_path):
    make_cifar(str(tmp_path / "data"), 10, n_train=100, n_test=20)
    run = tmp_path / "run"
    args = ["-d", "cifar10", "--data_dir", "data", "--device", "cpu", "--width", "0.125", "--niter", "1",
            "--inner_loop", "5", "--n_data", "0", "--batch_real", "4", "--ipc", "2", "-f", "2", "--adaptive_reg",
            "True", "--adaptive_period", "1", "--eval_during", "False", "--save_dir", run]
    code, lines = _term_when(_start("condense_reg.py", args, tmp_path), lambda: (run / "checkpoint.pt").exists())
    assert code == 143 and len(lines) == 1, lines
    it = torch.load(run / "checkpoint.pt", weights_only=True)["it"]
    assert lines[0] == (f"error: interrupted by SIGTERM; the checkpoint of iteration {it} is kept in {run}; re-run "
                        "the same command with --resume to continue from it"), lines
    p = run_script("condense_reg.py", *args, "--resume", cwd=tmp_path)
    assert f"resumed from {run} at iteration {it}" in p.stdout and (run / "data_20.pt").exists()


@pytest.mark.slow
def test_sigterm_to_the_dynamics_run_keeps_its_resume_state(tmp_path):
    from data.condensed import save_condensed

    make_cifar(str(tmp_path / "data"), 10, n_train=100, n_test=20)
    g = torch.Generator().manual_seed(0)
    save_condensed(str(tmp_path / "s" / "data.pt"), torch.rand(20, 3, 32, 32, generator=g),
                   torch.arange(10).repeat_interleave(2))
    args = ["-d", "cifar10", "--custom-data-dir", "s", "--ipc", "2", "--base-dir", "dyn", "--data-dir", "data",
            "--device", "cpu", "--epochs", "40", "--save-every", "1", "--test-period", "100"]
    state = tmp_path / "dyn" / "ipc2" / "resume" / "state.pt"
    code, lines = _term_when(_start("get_training_dynamics.py", args, tmp_path), state.exists)
    assert code == 143 and len(lines) == 1, lines
    assert lines[0].startswith("error: interrupted by SIGTERM; the resume state after epoch ") and \
        lines[0].endswith(f" is kept in {os.path.join('dyn', 'ipc2', 'resume')}; re-run the same command with "
                          "--resume to continue from it"), lines
    p = run_script("get_training_dynamics.py", *args, "--resume", cwd=tmp_path)
    assert "resuming at epoch" in p.stdout + (tmp_path / "dyn" / "ipc2" / "log-train-ipc2.log").read_text()
    assert (tmp_path / "dyn" / "ipc2" / "td-ipc2.pickle").exists()
