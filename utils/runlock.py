"""One process per run folder: an exclusive lock on ``<folder>/.lock`` for as long as a run writes the folder.

A condensation run (and a dynamics run) takes the lock after its checks and before its first write; a second
process that targets the same folder stops at once with one line naming the holder (``wait == 0``), or waits
for it: polling (every 1, 2, 4, 8, then 10 s) for at most ``wait`` seconds, or, with ``-1``, asleep in a
blocking lock call until the holder lets go. It reads the folder's resume state only once it holds the lock,
so it continues from the state the holder left and never from a half-written one.

What the lock relies on:

* ``fcntl.lockf`` (POSIX record locks, ``fcntl(F_SETLK)``) on the whole file, held by the open file until the
  process ends. The kernel drops the lock when the process dies, however it dies (``kill -9`` included): a
  dead job's lock is never stale on its host, and there is nothing to clean up by hand.
* Across nodes the file system must carry the lock to the other nodes: NFSv4 (and NFSv3 with its lock
  manager, ``lockd``/``statd``), GPFS/Spectrum Scale and CephFS do; Lustre does when mounted with ``flock``
  (``-o localflock`` keeps locks on one node: not safe for jobs on several nodes; ``-o noflock`` refuses
  them); BeeGFS only with ``tuneUseGlobalFileLocks = true`` in the client config (its default keeps them on
  one node); NFS mounted with ``nolock`` or ``local_lock=posix|all`` keeps them on one node.
* A node that crashes (or loses the network) holds its locks until the server notices: NFSv4 releases them
  when the client's lease runs out (about 90 s); NFSv3 only when the node reboots (``statd``) or an admin
  clears them. The holder line (host, pid, Slurm job) says which job to look for.
* A file system without locks (``ENOLCK``, ``EOPNOTSUPP``, ``ENOSYS``) is a one-line error naming the escape
  hatch ``--folder_lock False``: run without the lock, and then make sure yourself that no other process uses
  the folder.

The lock file is not deleted after a run (deleting it would let a third process lock a new file while a second
still waits on the old one); only a setup that fails removes the folder it created, lock file included, and
a taker checks after locking that the file it locked is still the one in the folder, and locks the new one if
not. A check that fails before the lock (``check_free``) names the holder of a folder in use instead.
It stays behind after the run, holding the identity of its last holder (host, pid, Slurm job, start, command
line: one JSON line); it is not a run file (``condensation.run_files.is_run_file``). POSIX locks belong to the
process: a second ``FolderLock`` on the same folder in the same process does not wait, and closing any other
descriptor of the lock file in the holding process would drop its lock (nothing here opens it twice).
No torch here.
"""
import contextlib
import errno
import json
import os
import shlex
import shutil
import socket
import sys
import time

from utils.errors import UserError

LOCK_NAME = ".lock"
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
BUSY = {errno.EACCES, errno.EAGAIN}
POLL_FIRST, POLL_MAX = 1.0, 10.0  # seconds between tries of a limited wait: 1, 2, 4, 8, 10, 10, ...


def _first_missing(path):
    """The outermost missing folder of ``path`` (what ``os.makedirs`` creates), or None; as
    ``utils.files.first_missing``, which loads torch."""
    p, top = os.path.abspath(path), None
    while not os.path.exists(p) and os.path.dirname(p) != p:
        top, p = p, os.path.dirname(p)
    return top


def identity():
    """The holder of a lock: host, pid, Slurm job (and array task), torchrun rank, start time, command line."""
    info = {"host": socket.gethostname(), "pid": os.getpid()}
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        info["slurm_job"] = env["SLURM_JOB_ID"]
        if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
            info["slurm_array"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("RANK") and env.get("WORLD_SIZE"):
        info["rank"] = f"{env['RANK']} of {env['WORLD_SIZE']}"
    info["since"] = time.strftime("%Y-%m-%d %H:%M:%S")
    info["command"] = shlex.join([os.path.basename(sys.executable), *sys.argv])
    return info


def describe(text):
    """The holder line of a lock file's text: ``host h, pid 123, Slurm job 456 (array 400_3), since ...``."""
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict) or "pid" not in info:
        return "holder unknown"
    parts = [f"host {info.get('host', '?')}", f"pid {info['pid']}"]
    if info.get("slurm_job"):
        parts.append(f"Slurm job {info['slurm_job']}" + (f" (array {info['slurm_array']})"
                                                          if info.get("slurm_array") else ""))
    if info.get("rank"):
        parts.append(f"rank {info['rank']}")
    if info.get("since"):
        parts.append(f"since {info['since']}")
    return ", ".join(parts)


class FolderLock:
    """The lock of one run folder (module docstring). ``acquire`` creates the folder if needed, takes the lock
    (waiting as ``wait`` says) and writes the holder; ``release`` lets it go; ``remove_created`` undoes a setup
    that failed: it removes the folder if this process created it, then releases."""

    def __init__(self, folder, wait=0, *, what="condensation run", flag="--save_dir", wait_flag="--lock_wait",
                 off_flag="--folder_lock", enabled=True, log=None):
        self.folder, self.wait, self.what, self.flag = folder, wait, what, flag
        self.wait_flag, self.off_flag, self.enabled = wait_flag, off_flag, enabled
        self.log = log or (lambda m: print(m, flush=True))
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd, self.created = None, None

    # ---- taking it ---------------------------------------------------------------------------------
    def acquire(self):
        if not self.enabled or self.fd is not None:
            return self
        top = _first_missing(self.folder)
        start, delay, said = time.monotonic(), POLL_FIRST, False
        while True:
            fd = self._open()
            got = self._try(fd)
            if not got:
                holder = describe(self._read(fd))
                waited = time.monotonic() - start
                if self.wait == 0 or (self.wait > 0 and waited >= self.wait):
                    os.close(fd)
                    raise UserError(self._busy(holder, waited))
                if not said:
                    left = "as long as it takes" if self.wait < 0 else f"up to {self.wait} s"
                    self.log(f"waiting for {self.folder}, in use by another {self.what} ({holder}): {left}")
                    said = True
                if self.wait < 0:  # as long as it takes: the kernel (or the NFS server) wakes us when it is free
                    got = self._try(fd, block=True)
            if got and self._current(fd):
                break
            os.close(fd)
            if got:
                continue  # a failed setup removed the folder meanwhile: lock the new file
            waited = time.monotonic() - start
            time.sleep(delay if self.wait < 0 else min(delay, max(0.0, self.wait - waited)))
            delay = min(2 * delay, POLL_MAX)
        previous = self._read(fd)
        # the folder is ours to remove on a failed setup only if we made it and nobody held it before us
        self.created = top if top is not None and not previous.strip() else None
        self.fd = fd
        self._write(identity())
        return self

    def _open(self):
        try:
            os.makedirs(self.folder, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UserError(f"cannot open the lock file {self.path} of the {self.what} ({e.strerror}); make it "
                            f"writable (it may belong to another user) or pass another {self.flag}") from None

    def _try(self, fd, block=False):
        """Lock the whole file through ``fd``: True, or False while another process holds it (or, blocking, when
        the kernel reports a deadlock: then the caller polls)."""
        import fcntl

        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            return True
        except OSError as e:
            if e.errno in BUSY or e.errno == errno.EDEADLK:
                return False
            os.close(fd)
            if e.errno in UNSUPPORTED:
                raise UserError(f"the file system of {self.folder} does not support file locks ({e.strerror}), so "
                                f"it cannot make sure that no other process writes this {self.what}; use a folder "
                                f"on a file system with locks (docs/condensing.md), or pass {self.off_flag} False "
                                "and run one process per folder yourself") from None
            raise UserError(f"cannot lock {self.path} ({e.strerror}); pass another {self.flag}") from None

    def _current(self, fd):
        """True if the file locked through ``fd`` is still the folder's lock file (a removed one is not)."""
        try:
            st, here = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return st.st_nlink > 0 and (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)

    @staticmethod
    def _read(fd):
        try:
            return os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")
        except OSError:
            return ""

    def _write(self, info):
        data = (json.dumps(info) + "\n").encode()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            os.fsync(self.fd)
        except OSError:
            pass  # the holder line is information only; the lock is what counts

    def _busy(self, holder, waited):
        waited = f"; waited {waited:.0f} s" if waited >= 1 else ""
        return (f"{self.folder} is in use by another {self.what} ({holder}){waited}; wait for it, pass "
                f"{self.wait_flag} SECONDS (-1: wait as long as it takes), or pass another {self.flag}")

    def check_free(self, refusal):
        """Raise the busy message instead of ``refusal`` (a UserError of a check before the lock, e.g. "holds
        another run") while another process holds the folder: the user learns who uses it. Probes with a
        non-blocking lock taken and dropped at once (it never waits and never creates the file)."""
        import fcntl

        if not self.enabled or self.fd is not None:
            raise refusal
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            raise refusal from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        except OSError as e:
            if e.errno in BUSY:
                raise UserError(self._busy(describe(self._read(fd)), 0)) from None
        finally:
            os.close(fd)
        raise refusal

    # ---- letting it go -----------------------------------------------------------------------------
    def release(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # drops the lock; the file stays with its last holder's line

    def remove_created(self):
        """After a failed setup: remove the folder if this process created it (lock file included), then
        release. A process waiting on the removed file notices and locks the new one (``_current``)."""
        if self.created is not None and self.fd is not None:
            shutil.rmtree(self.created, ignore_errors=True)
        self.release()

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            self.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, kind, exc, tb):
        self.release()


@contextlib.contextmanager
def hold_folder(folder, wait=0, what="condensation run", flag="--save_dir", **kw):
    """``with hold_folder(folder, wait):`` the folder is this process's until the block ends (``FolderLock``)."""
    with FolderLock(folder, wait, what=what, flag=flag, **kw) as lock:
        yield lock
