"""One process per run folder (utils/runlock.py, docs/condensing.md#one-process-per-run-folder).

Fast tier: the lock against real holder processes (a few lines of Python holding it): a second taker is
refused with one line naming the holder, a waiter gets the folder when the holder ends, a holder killed with
SIGKILL blocks nothing, the holder line names the Slurm job, and a holder line that cannot be read says so.
Slow tier: two real ``condense_reg.py`` processes on one ``--save_dir``.
"""
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, run_script, script_env
from utils import runlock
from utils.errors import UserError
from utils.runlock import LOCK_NAME, FolderLock, hold_folder

HOLD = """
import sys
sys.path.insert(0, {root!r})
from utils.runlock import FolderLock
lock = FolderLock(sys.argv[1]).acquire()
if sys.argv[2] == "raw":  # a holder whose line is gone: only the lock itself
    import os
    os.ftruncate(lock.fd, 0)
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def holder(folder, env=None, mode="line"):
    """A process holding ``folder``'s lock until its stdin is closed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD.format(root=ROOT), str(folder), mode], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=dict(script_env(), **(env or {})))
    assert p.stdout.readline().strip() == "held"
    return p


def end(p):
    p.stdin.close()
    assert p.wait(timeout=30) == 0


@pytest.fixture
def fast_poll(monkeypatch):
    monkeypatch.setattr(runlock, "POLL_FIRST", 0.05)
    monkeypatch.setattr(runlock, "POLL_MAX", 0.2)


def refusal(folder, wait=0, **kw):
    with pytest.raises(UserError) as e:
        FolderLock(folder, wait, **kw).acquire()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_second_taker_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "raid" / "run"
    p = holder(run)
    try:
        msg = refusal(str(run))
        assert msg.startswith(f"{run} is in use by another condensation run (host {socket.gethostname()}, "
                              f"pid {p.pid}, since ")
        assert "pass --lock_wait SECONDS (-1: wait as long as it takes), or pass another --save_dir" in msg
        assert "waited" not in msg
        dyn = refusal(str(run), what="dynamics run", flag="--base-dir", wait_flag="--lock-wait")
        assert "another dynamics run" in dyn and "--lock-wait SECONDS" in dyn and "another --base-dir" in dyn
    finally:
        end(p)
    with hold_folder(str(run)) as lock:  # free again: taken at once, the line is ours
        assert lock.fd is not None and f'"pid": {os.getpid()}' in (run / LOCK_NAME).read_text()
    assert (run / LOCK_NAME).exists()  # never deleted: it keeps its last holder


def test_a_refusal_before_the_lock_names_the_holder_of_a_folder_in_use(tmp_path):
    """A check before the lock ("holds another run") is replaced by the holder's line while the folder is in use."""
    other = UserError("--save_dir run holds another condensation run (args.yaml); pass --resume to continue it")
    lock = FolderLock(str(tmp_path / "run"))
    with pytest.raises(UserError, match="holds another condensation run"):
        lock.check_free(other)  # no lock file: the check's own message
    assert not (tmp_path / "run").exists()
    p = holder(tmp_path / "run")
    try:
        with pytest.raises(UserError, match=f"is in use by another condensation run .*pid {p.pid}, since"):
            lock.check_free(other)
    finally:
        end(p)
    with pytest.raises(UserError, match="holds another condensation run"):
        lock.check_free(other)  # a folder no longer in use: the check's message again


def test_a_waiter_gets_the_folder_when_the_holder_ends(tmp_path, fast_poll):
    p = holder(tmp_path / "run")
    said = []
    threading.Timer(0.5, p.stdin.close).start()
    t0 = time.monotonic()
    lock = FolderLock(str(tmp_path / "run"), 30, log=said.append).acquire()
    try:
        assert 0.4 < time.monotonic() - t0 < 20
        assert len(said) == 1 and said[0].startswith(f"waiting for {tmp_path / 'run'}, in use by another "
                                                     f"condensation run (host {socket.gethostname()}, pid {p.pid}")
        assert said[0].endswith("up to 30 s")
    finally:
        lock.release()
        p.wait(timeout=30)


def test_wait_forever_says_so_once(tmp_path, fast_poll):
    p = holder(tmp_path / "run")
    said = []
    threading.Timer(0.6, p.stdin.close).start()
    with hold_folder(str(tmp_path / "run"), -1, log=said.append):
        pass
    p.wait(timeout=30)
    assert len(said) == 1 and said[0].endswith("as long as it takes")


def test_a_waiter_stops_when_its_time_is_out(tmp_path, fast_poll):
    p = holder(tmp_path / "run")
    try:
        t0 = time.monotonic()
        msg = refusal(str(tmp_path / "run"), wait=1, log=lambda m: None)
        assert 1 <= time.monotonic() - t0 < 10
        assert f"pid {p.pid}" in msg and "; waited 1 s; wait for it" in msg
    finally:
        end(p)


def test_a_killed_holder_blocks_nothing(tmp_path):
    p = holder(tmp_path / "run")
    p.send_signal(signal.SIGKILL)  # kill -9: no cleanup code runs, the kernel drops the lock
    p.wait(timeout=30)
    t0 = time.monotonic()
    with hold_folder(str(tmp_path / "run"), 0):
        assert time.monotonic() - t0 < 1
    assert f'"pid": {p.pid}' not in (tmp_path / "run" / LOCK_NAME).read_text()


def test_the_holder_line_names_the_slurm_job(tmp_path):
    env = {"SLURM_JOB_ID": "456", "SLURM_ARRAY_JOB_ID": "400", "SLURM_ARRAY_TASK_ID": "3", "RANK": "1",
           "WORLD_SIZE": "4"}
    p = holder(tmp_path / "run", env)
    try:
        msg = refusal(str(tmp_path / "run"))
        assert f"pid {p.pid}, Slurm job 456 (array 400_3), rank 1 of 4, since " in msg
    finally:
        end(p)
    p = holder(tmp_path / "plain", {"SLURM_JOB_ID": "789"})
    try:
        assert f"pid {p.pid}, Slurm job 789, since" in refusal(str(tmp_path / "plain"))
    finally:
        end(p)


def test_a_holder_line_that_cannot_be_read_says_holder_unknown(tmp_path):
    p = holder(tmp_path / "run", mode="raw")  # holds the lock, its line emptied
    try:
        assert (tmp_path / "run" / LOCK_NAME).read_text() == ""
        assert "in use by another condensation run (holder unknown); wait for it" in refusal(str(tmp_path / "run"))
    finally:
        end(p)
    for text in ("garbage\x00\n", "[1, 2]\n", '{"host": "h"}\n'):
        assert runlock.describe(text) == "holder unknown"


def test_a_lock_file_that_cannot_be_opened_is_one_line(tmp_path):
    os.makedirs(tmp_path / "run" / LOCK_NAME)  # a folder in its place: it cannot be opened for writing
    msg = refusal(str(tmp_path / "run"))
    assert msg.startswith(f"cannot open the lock file {tmp_path / 'run' / LOCK_NAME} of the condensation run (")
    assert msg.endswith("or pass another --save_dir")


def test_a_file_system_without_locks_names_the_way_out(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    msg = refusal(str(tmp_path / "run"))
    assert f"the file system of {tmp_path / 'run'} does not support file locks" in msg
    assert "pass --folder_lock False and run one process per folder yourself" in msg
    with hold_folder(str(tmp_path / "off"), enabled=False):  # the way out: no lock, no lock file
        pass
    assert not (tmp_path / "off").exists()


def test_a_failed_setup_removes_only_what_it_created(tmp_path):
    lock = FolderLock(str(tmp_path / "a" / "b" / "run")).acquire()
    assert lock.created == str(tmp_path / "a")
    lock.remove_created()
    assert not (tmp_path / "a").exists() and lock.fd is None
    os.makedirs(tmp_path / "old")
    lock = FolderLock(str(tmp_path / "old")).acquire()
    assert lock.created is None
    lock.remove_created()
    assert sorted(os.listdir(tmp_path / "old")) == [LOCK_NAME]
    lock.release()  # twice: nothing happens


def test_a_folder_created_and_held_by_another_process_is_not_ours(tmp_path, monkeypatch, fast_poll):
    """The folder did not exist when this taker looked, but another process made it and held it first: a failed
    setup here must not remove that process's run."""
    p = holder(tmp_path / "run")
    monkeypatch.setattr(runlock, "_first_missing", lambda path: str(tmp_path / "run"))  # as it looked before
    threading.Timer(0.3, p.stdin.close).start()
    lock = FolderLock(str(tmp_path / "run"), 30, log=lambda m: None).acquire()
    assert lock.created is None
    lock.remove_created()
    assert (tmp_path / "run" / LOCK_NAME).exists()
    p.wait(timeout=30)


def test_a_removed_lock_file_is_not_trusted(tmp_path):
    lock = FolderLock(str(tmp_path / "run"))
    os.makedirs(tmp_path / "run")
    fd = os.open(lock.path, os.O_RDWR | os.O_CREAT)
    try:
        assert lock._current(fd)
        os.unlink(lock.path)  # removed by a failed setup: a new taker must lock the new file
        assert not lock._current(fd)
        open(lock.path, "w").close()
        assert not lock._current(fd)
    finally:
        os.close(fd)


def test_the_lock_file_is_not_a_run_file(tmp_path):
    from condensation.run_files import is_run_file
    from utils.files import check_fresh_folder

    assert not is_run_file(LOCK_NAME)
    with hold_folder(str(tmp_path / "run")):
        pass
    check_fresh_folder(str(tmp_path / "run"), is_run_file, "condensation run", "--save_dir")  # only .lock: fresh


# ---- two condense_reg.py processes on one --save_dir --------------------------------------------------


def _wait_for_holder(path, pid, proc, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if f'"pid": {pid},' in path.read_text():
                return
        except OSError:
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the first run never took the lock")


def _files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        st = os.stat(folder / name)
        out[name] = ((folder / name).read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


@pytest.mark.slow
def test_two_condensations_on_one_folder(tmp_path):
    """A runs; B (``--resume --lock_wait 0``, and a new run without ``--resume``) stops with one line naming A's
    pid and leaves A's folder as it was; C (``--resume --lock_wait -1``) waits, then finds A's run complete:
    nothing to do, A's files written once."""
    from fakedata import make_cifar

    make_cifar(str(tmp_path / "data"), 10, n_train=100, n_test=20)
    run = tmp_path / "run"
    args = ["-d", "cifar10", "--data_dir", tmp_path / "data", "--device", "cpu", "--width", "0.125", "--niter", "1",
            "--inner_loop", "10", "--n_data", "0", "--batch_real", "4", "--ipc", "1", "--eval_during", "False",
            "--save_dir", run]
    cmd = [sys.executable, os.path.join(ROOT, "condense_reg.py"), *map(str, args)]
    a = subprocess.Popen(cmd, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c = None
    try:
        _wait_for_holder(run / LOCK_NAME, a.pid, a)
        a.send_signal(signal.SIGSTOP)  # A holds the folder, frozen wherever it is
        before = _files(run)
        b = run_script("condense_reg.py", *args, "--resume", "--lock_wait", "0", check=False, timeout=300)
        lines = [ln for ln in b.stderr.splitlines() if ln.strip()]
        assert b.returncode == 2 and len(lines) == 1, b.stderr
        assert lines[0].startswith(f"error: {run} is in use by another condensation run (host {socket.gethostname()}"
                                   f", pid {a.pid}, since "), lines[0]
        assert _files(run) == before, "a refused run changed the folder"
        b = run_script("condense_reg.py", *args, check=False, timeout=300)  # a new run there: the same refusal
        assert b.returncode == 2 and "is in use by another condensation run (host " in b.stderr, b.stderr
        assert f"pid {a.pid}, since " in b.stderr and len(b.stderr.strip().splitlines()) == 1, b.stderr
        assert _files(run) == before, "a refused run changed the folder"
        c = subprocess.Popen([*cmd, "--resume", "--lock_wait", "-1"], env=script_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = c.stdout.readline()
        assert first.startswith(f"waiting for {run}, in use by another condensation run (host ") and \
            f"pid {a.pid}" in first and first.rstrip().endswith("as long as it takes"), first + c.stderr.read()
        a.send_signal(signal.SIGCONT)
        out, err = a.communicate(timeout=300)
        assert a.returncode == 0, err
        done = {n: v for n, v in _files(run).items() if n.startswith("data") or n == "checkpoint.pt"}
        assert "data_10.pt" in done
        out, err = c.communicate(timeout=300)
        assert c.returncode == 0, err
        assert f"nothing to do: {run} is complete (10 iterations)" in out, out
        assert {n: v for n, v in _files(run).items() if n in done} == done  # bytes, inode, mtime: written once
    finally:
        for p in (a, c):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
