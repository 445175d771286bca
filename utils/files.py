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
  the file could be written, creating nothing that was not there; ``check_apart``: an output is never, nor
  lies inside, an input; ``check_fresh_folder``: a folder holding another run is written to only to resume it.
* **A lock for shared records** (``locked``): ``test.py`` jobs running in parallel append to one
  ``test_results.json``; the read-modify-write is serialised with ``fcntl.flock`` on its folder (POSIX)
  so that no record is lost.
* **Torch files as data** (``load_torch``): ``torch.load(weights_only=True)`` on CPU, every failure a
  one-line ``UserError`` naming the file and what is wrong with it (never torch's own text);
  ``nonfinite`` finds NaN/Inf in a loaded checkpoint.
* **Strict JSON** (``append_jsonl``, ``utils.config.to_json``): no NaN/Infinity is ever written (as null);
  ``read_jsonl`` skips only a last line cut by a kill and refuses a damaged file.
"""
import contextlib
import errno
import json
import os
import pickle
import re
import socket
import tempfile
import time
import warnings
import zipfile

import torch
import yaml

from utils.config import jsonable, to_json
from utils.errors import UserError
from utils.safe_pickle import ZIP_MAGIC, global_kind, pickle_globals

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
    """One strict-JSON line appended (``metrics.jsonl``; ``to_json``: NaN/Inf become null); a line cut by a
    kill is skipped by ``read_jsonl``."""
    with open(path, "a") as f:
        f.write(to_json(record) + "\n")


def read_jsonl(path, fix="remove its damaged lines (every line is one JSON object) or pass another file"):
    """The records (JSON objects) of a JSON-lines file (``metrics.jsonl``). Only the last line may be cut by a
    kill (no newline at its end, and it starts like an object): it is skipped. Any other line that is not a
    JSON object means the file is damaged: a one-line ``UserError`` naming the file, the line and ``fix``."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a JSON-lines file; {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); {fix}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
            if i == len(lines) and line.lstrip().startswith(b"{"):
                continue  # the last line, cut by a kill while it was written
        if not isinstance(rec, dict):
            raise UserError(f"{path} is damaged: line {i} is not a JSON object; {fix}")
        out.append(rec)
    return out


def load_yaml_mapping(path, what, fix):
    """A YAML file that must hold a mapping (``args.yaml``); a damaged one is a one-line ``UserError`` naming the
    ``what``, the file and the ``fix``. An empty file is an empty mapping."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"cannot read the {what} {path} ({e.strerror}); {fix}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"the {what} {path} is not valid YAML{at}; {fix}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UserError(f"the {what} {path} holds a YAML {type(doc).__name__}, not a mapping of settings; {fix}")
    return doc


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


def check_apart(output, flag, inputs):
    """UserError if ``output`` is, or lies inside, one of ``inputs`` (``[(path, what), ...]``, ``what`` naming
    the option it comes from; empty paths are skipped): an output never overwrites what the command reads.
    Paths are compared after resolving links."""
    out = os.path.realpath(output)
    for path, what in inputs:
        if not path:
            continue
        src = os.path.realpath(path)
        if out == src or out.startswith(src.rstrip(os.sep) + os.sep):
            where = "is" if out == src else "lies inside"
            raise UserError(f"{flag} {output} {where} {path} ({what}), which this command reads: writing there "
                            f"could destroy it; pass another {flag}")


def check_fresh_folder(folder, is_run_file, what, flag, resume="--resume"):
    """UserError if ``folder`` holds files of another run (names for which ``is_run_file`` is true) and the
    command does not resume it: a run folder is never written to without ``resume``."""
    if not os.path.isdir(folder):
        return
    held = sorted(n for n in os.listdir(folder) if is_run_file(n))
    if held:
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        raise UserError(f"{flag} {folder} holds another {what} ({shown}); pass {resume} to continue it, or a fresh "
                        f"{flag} for a new one")


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


LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950a86a20f9469cfc6c).to_bytes(10, "little")  # torch.save before 1.6
NPY_MAGIC = b"\x93NUMPY"
_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def _zip_intact(path):
    """True when ``path`` is a complete zip archive whose members all pass their CRC check."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except Exception:  # noqa: BLE001 -- BadZipFile, a damaged header, a cut member: all "not intact"
        return False


def _refused_objects(name, kind):
    """The reason phrase for a torch file that ``weights_only`` refused because of global ``name``."""
    if kind == "numpy":
        return (f"it holds numpy arrays or other numpy objects ({name}), not tensors, and torch refuses to load them "
                "because loading objects other than tensors could run code (save tensors instead, e.g. "
                "torch.from_numpy(array))")
    if kind == "code":
        return (f"it refers to code ({name}) that loading it would run, so it is refused (do not use this file "
                "unless you trust where it came from)")
    hint = " (save a model's state_dict(), not the model)" if name.startswith("torch.nn.") else ""
    return (f"it holds Python objects ({name}) that are not tensors, numbers, strings or containers, and loading "
            f"them could run code, so they are refused{hint}")


def _torch_failure(path, e):
    """Why ``torch.load(path, weights_only=True)`` raised ``e``: a phrase naming what the file is (never torch's
    own text, which is many lines long and holds terminal colour codes)."""
    with open(path, "rb") as f:
        head = f.read(16)
    damaged = "the file is truncated, damaged or was not completely written"
    if not head:
        return "it is empty (0 bytes): " + damaged
    if len(head) < len(LEGACY_TORCH_MAGIC) and (ZIP_MAGIC.startswith(head[:4]) or LEGACY_TORCH_MAGIC.startswith(head)):
        return damaged  # cut within the first bytes of a torch file
    found = _GLOBAL.search(str(e)) if isinstance(e, pickle.UnpicklingError) else None
    kind = global_kind(found.group(1)) if found else None
    if head.startswith(ZIP_MAGIC):
        if not _zip_intact(path):
            return damaged
        with zipfile.ZipFile(path) as z:
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist()):
                return "it is a zip archive but not a torch file (torch.save)"
        return damaged if kind in (None, "damaged") else _refused_objects(found.group(1), kind)
    if head.startswith(LEGACY_TORCH_MAGIC):  # the format of torch.save before torch 1.6
        return damaged if kind in (None, "damaged") else _refused_objects(found.group(1), kind)
    if head.startswith(NPY_MAGIC):
        return "it is a numpy .npy file (numpy.save), not a torch file (torch.save)"
    if head[:1] == b"\x80" and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        with open(path, "rb") as f:
            code = [g for g in pickle_globals(f) if global_kind(g) == "code"]
        if code:
            return (f"it is a plain Python pickle (pickle.dump), not a torch file, and it refers to code ({code[0]}) "
                    "that loading it would run, so it is refused (do not use this file unless you trust where it "
                    "came from)")
        return "it is a plain Python pickle (pickle.dump), not a torch file (torch.save)"
    return "it is not a torch file (torch.save)"


def load_torch(path, what, fix):
    """``torch.load(path, weights_only=True)`` on CPU; every failure is a one-line ``UserError`` naming the
    ``what``, the file, what is wrong with it (a folder, missing, empty, truncated or damaged, numpy arrays or
    other objects that are not tensors, code, a plain pickle, not a torch file) and the ``fix``."""
    if os.path.isdir(path):
        raise UserError(f"the {what} {path} is a folder, not a file; {fix}")
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} not found; {fix}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise around the one-line error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise UserError(f"cannot read the {what} {path} ({e.strerror or type(e).__name__}); {fix}") from None
    except Exception as e:  # noqa: BLE001 -- torch raises anything from EOFError to RuntimeError on a bad file
        raise UserError(f"cannot read the {what} {path}: {_torch_failure(path, e)}; {fix}") from None


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
