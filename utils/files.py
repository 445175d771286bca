"""Run files that survive kills, full disks, parallel jobs and bad paths.

* **Atomic writes** (``atomic_write`` / ``atomic_save`` / ``atomic_write_text``): the bytes go to a temp
  file ``.tmp_{host}_{pid}_…`` in the target folder, then ``os.replace`` puts it in place, so a reader
  sees the old file or the new one, never half of one. A full disk is a one-line ``UserError`` that
  says so; the previous file is untouched and the temp file is removed.
* **Stale temp files** (``clean_stale_temps``): a ``kill -9`` during a write leaves its temp file behind.
  Each run removes, on start and on resume, the temp files of its folder whose writer is gone: a
  process of this host that no longer exists, or (another host of a shared file system) older than a
  day. Temp files of live parallel jobs are left alone.
* **Output paths checked before any work** (``check_output_file`` / ``check_output_dir``): probe that
  the file could be written, creating nothing that was not there.
* **A lock for shared records** (``locked``): ``test.py`` jobs running in parallel append to one
  ``test_results.json``; the read-modify-write is serialised with ``fcntl.flock`` on its folder (POSIX)
  so that no record is lost.
* **Torch files as data** (``load_torch``): ``torch.load(weights_only=True)`` on CPU, every failure a
  one-line ``UserError`` naming the file; ``nonfinite`` finds NaN/Inf in a loaded checkpoint.
"""
import contextlib
import errno
import json
import os
import socket
import tempfile
import time

import torch
import yaml

from utils.config import jsonable
from utils.errors import UserError

TMP_PREFIX = ".tmp_"
STALE_FOREIGN_SECONDS = 24 * 3600


def _host():
    return socket.gethostname().replace("_", "-")


def _disk_full(exc):
    """True if ``exc`` (or what it was raised from) is ENOSPC/EDQUOT; torch wraps it in a RuntimeError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def atomic_write(path, write):
    """Call ``write(f)`` on a temp file in the target folder, then rename it into place."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{_host()}_{os.getpid()}_", dir=d)
    except OSError as e:
        if _disk_full(e):
            raise UserError(f"no space left on the device of {d}; free space and re-run") from None
        raise UserError(f"cannot write {path} ({e.strerror}); choose a writable output path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_full(e):
            keep = "the previous file is kept" if os.path.exists(path) else "nothing was written"
            raise UserError(f"no space left on the device while writing {path} ({keep}); free space and "
                            "re-run the same command (with --resume where the script has it)") from None
        raise


def atomic_save(obj, path):
    """``torch.save`` through a temp file + rename: a crash never leaves a half-written file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_bytes(path, data):
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode())


def save_config(args, path):
    """The resolved arguments of a run, as YAML (timm-style ``args.yaml``)."""
    atomic_write_text(path, yaml.safe_dump(jsonable(vars(args)), sort_keys=True))


def append_jsonl(path, record):
    """One JSON line appended (``metrics.jsonl``); a line cut by a kill is skipped by its readers."""
    with open(path, "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")


def read_jsonl(path):
    """The records of a JSON-lines file (``metrics.jsonl``), skipping a line cut by a kill."""
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _writer_gone(name, age):
    """Is the process that wrote temp file ``name`` (``age`` seconds old) gone?"""
    parts = name[len(TMP_PREFIX):].split("_")
    if len(parts) < 3 or not parts[1].isdigit():
        return False  # not one of ours (a probe or another tool's file)
    host, pid = parts[0], int(parts[1])
    if host != _host():  # cannot see processes of another host: wait a day
        return age >= STALE_FOREIGN_SECONDS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def clean_stale_temps(folder, log=None):
    """Remove the temp files of ``folder`` left by killed writers (see the module docstring)."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        if not name.startswith(TMP_PREFIX):
            continue
        p = os.path.join(folder, name)
        try:
            age = time.time() - os.path.getmtime(p)
            if os.path.isfile(p) and _writer_gone(name, age):
                os.unlink(p)
                removed.append(name)
        except OSError:
            continue  # removed by another job meanwhile
    if removed and log is not None:
        log(f"removed {len(removed)} temp file(s) left in {folder} by an interrupted save")
    return removed


def _existing_ancestor(path):
    top = first_missing(path)
    return os.path.abspath(path) if top is None else os.path.dirname(top)


def first_missing(path):
    """The outermost folder of ``path`` that does not exist yet (what ``os.makedirs`` would create; the
    thing to remove to undo it), or None when ``path`` exists."""
    p, top = os.path.abspath(path), None
    while not os.path.exists(p):
        top, parent = p, os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return top


def _probe_dir(d, what, path, flag):
    if not os.path.isdir(d):
        raise UserError(f"cannot write the {what} {path}: {d} is not a folder; pass another {flag}")
    try:
        tempfile.TemporaryFile(dir=d, prefix=f"{TMP_PREFIX}probe_").close()
    except OSError as e:
        raise UserError(f"cannot write the {what} {path}: {d} is not writable ({e.strerror}); "
                        f"pass another {flag}") from None


def check_output_dir(path, what, flag):
    """UserError unless folder ``path`` exists writable or could be created; creates nothing."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"the {what} {path} exists and is not a folder; pass another {flag}")
    _probe_dir(_existing_ancestor(path), what, path, flag)


def check_output_file(path, what, flag):
    """UserError unless file ``path`` could be written (atomically, in its folder); creates nothing."""
    if os.path.isdir(path):
        raise UserError(f"the {what} {path} is a folder; pass a file name to {flag}")
    _probe_dir(_existing_ancestor(os.path.dirname(os.path.abspath(path))), what, path, flag)


@contextlib.contextmanager
def locked(path):
    """Exclusive advisory lock (``flock``) on the folder of ``path``: no lock file is left behind.
    No-op where ``fcntl`` is missing (not POSIX)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    d = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(d, exist_ok=True)
    fd = os.open(d, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def load_torch(path, what, fix):
    """``torch.load(path, weights_only=True)`` on CPU; a missing, truncated or foreign file is a
    one-line ``UserError`` naming the ``what`` and the ``fix``."""
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} not found; {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, a pickle of objects weights_only refuses, not a torch file
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"cannot read the {what} {path} ({type(e).__name__}: {why}); the file is truncated, "
                        f"damaged or not a torch file: {fix}") from None


def nonfinite(obj, prefix=""):
    """Names of the floating tensors in a nested dict/list holding NaN or Inf (empty when all finite)."""
    bad = []
    if torch.is_tensor(obj):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            bad.append(prefix or "tensor")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            bad += nonfinite(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad += nonfinite(v, f"{prefix}[{i}]")
    return bad
