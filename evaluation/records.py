"""The evaluation record of ``test.py`` (reference he-y/Multisize-Dataset-Condensation/test.py; reference
he-y/you-only-condense-once/test.py; docs/evaluating.md; docs/algorithms.md#pruned-set-evaluation): one JSON object per
evaluation
appended to ``--results_file`` (settings, per-repeat best/last and curve, mean ± std, wall time,
device), and the ``<results_file>.<settings hash>.partial`` file that keeps finished repeats of an interrupted
run (one per evaluation's settings, so parallel jobs sharing one results file, ``python -m sweep``, never
overwrite each other's).

Crash safety: the partial file is rewritten atomically after every repeat with the wall time spent so
far, so a re-run of the same command resumes with honest statistics (each repeat is seeded by its
index, ``evaluation.protocol.repeat_seed``) and a wall time that adds up the invocations (time spent
on a repeat that a kill interrupted is not counted). Every evaluation carries a ``run_id`` kept in the
partial file: a kill between appending the record and removing the partial file cannot append the
record twice. Appends are serialised by a lock on the results file's folder, so parallel jobs sharing
one results file never lose a record.

Every file written here is strict JSON (``utils.config.to_json``: no NaN/Infinity). A results file is a JSON
list of records, each an object with ``args`` and ``results`` (what ``evaluation.report`` reads);
``load_records`` is the one check of that, for ``test.py`` (before any work) and for the report.
"""
import hashlib
import json
import os
import platform
import re
import time
import uuid

from utils.config import jsonable, to_json
from utils.errors import UserError
from utils.files import atomic_write_text, check_output_file, locked


class PartialRuns:
    """Finished repeats of an evaluation, kept in ``<results_file>.<settings hash>.partial`` until the record
    is written, so that re-running the same command after an interruption resumes (never loses runs).
    The file name carries a hash of the settings: evaluations with other settings that share the results file
    (the IPC-y prefixes of a table, run in parallel) keep their own; a file whose content is of other
    settings anyway (a hash collision) is ignored and replaced."""

    IGNORED = ("explicit", "results_file", "save_subset", "device", "pruning")

    def __init__(self, results_file, args):
        self.key = json.dumps(jsonable({k: v for k, v in sorted(vars(args).items()) if k not in self.IGNORED}))
        self.path = partial_path(results_file, self.key)
        self.done, self.run_id, self.prior_seconds = {}, uuid.uuid4().hex, 0.0
        self.started = time.time()
        if os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    st = json.load(f)
                if st.get("key") == self.key:
                    self.done = st["runs"]
                    self.run_id = st.get("run_id", self.run_id)
                    self.prior_seconds = float(st.get("seconds", 0.0))
            except (OSError, ValueError, KeyError, TypeError):
                pass

    def elapsed(self):
        """Wall seconds of this evaluation: earlier invocations (up to their last finished repeat) + this one."""
        return self.prior_seconds + time.time() - self.started

    def save(self, label, runs):
        self.done[label] = runs
        atomic_write_text(self.path, to_json({"key": self.key, "run_id": self.run_id, "seconds": self.elapsed(),
                                              "runs": self.done}))

    def clear(self):
        if os.path.exists(self.path):
            os.remove(self.path)


def partial_path(results_file, key):
    return f"{results_file}.{hashlib.sha1(key.encode()).hexdigest()[:12]}.partial"


def default_results_file(args, source):
    """``--results_file``, else ``test_results.json`` (``test_results_{run_tag}.json`` with ``--run_tag``)
    next to the set, in YOCO's log folder for a pruned set, or under ``raid/results`` for real images."""
    if args.results_file:
        return args.results_file
    if not re.fullmatch(r"[A-Za-z0-9_.+-]*", args.run_tag):
        raise UserError(f"--run_tag {args.run_tag!r} names the results file: use letters, digits and _ . + - only")
    if args.slct_type == "random":
        folder = os.path.join("raid", "results", args.datatag, f"random_ipc{args.ipc}")
    else:
        folder = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
    if args.slct_ipc > 0:  # YOCO logs to condensed_img -> log_{reproduce_exp} (YOCO reference test.py, test_data;
    # docs/algorithms.md#pruned-set-evaluation)
        folder = folder.replace("condensed_img", f"log_{args.reproduce_exp}")
    return os.path.join(folder, f"test_results_{args.run_tag}.json" if args.run_tag else "test_results.json")


RECORD_KEYS = ("args", "results")  # what every record of make_record has and the report reads


def records_problem(data):
    """None when ``data`` (a parsed JSON document) is a list of ``test.py`` records, else what is wrong."""
    if not isinstance(data, list):
        kinds = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        return f"it holds {kinds.get(type(data), 'null')}"
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            return f"item {i} is {json.dumps(rec)[:40]}, not a record (a JSON object)"
        missing = [k for k in RECORD_KEYS if not isinstance(rec.get(k), dict)]
        if missing:
            return f"item {i} is not a record of test.py (no {' or '.join(repr(k) for k in missing)} object)"
    return None


def load_records(path, fix):
    """The records of an existing results file; anything else (not JSON, not a list of records) is a one-line
    ``UserError`` naming the file, what is wrong and ``fix``."""
    try:
        with open(path) as f:
            data = json.load(f)
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a results file; {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read the results file {path} ({e.strerror}); {fix}") from None
    except ValueError as e:
        problem = f"not valid JSON ({str(e).splitlines()[0][:80]})"
    else:
        problem = records_problem(data)
    if problem:
        raise UserError(f"{path} is not a results file of test.py: not a JSON list of records ({problem}); {fix}")
    return data


def read_records(path):
    """The records of ``test.py``'s results file ([] when it does not exist); a damaged file is a one-line
    error."""
    if not os.path.exists(path):
        return []
    return load_records(path, "pass another --results_file (or move this file away)")


def check_results_file(path):
    """Before any work: the results file can be written and, if it exists, is a list of records."""
    check_output_file(path, "results file", "--results_file")
    read_records(path)


def append_record(path, record):
    """Append one evaluation to a JSON list, atomically (an interrupted write never corrupts it) and under
    a lock (parallel jobs never drop each other's records). A record whose ``run_id`` is already in the
    file is not appended again; returns whether it was appended."""
    with locked(path):
        records = read_records(path)
        rid = record.get("run_id")
        if rid is not None and any(isinstance(r, dict) and r.get("run_id") == rid for r in records):
            return False
        records.append(record)
        atomic_write_text(path, to_json(records, indent=1))
    return True


def make_record(args, device, source, n_train, results, wall_seconds, run_id=None):
    """One evaluation as a JSON-able dict (every setting except the bookkeeping ``explicit`` list)."""
    import torch

    return {
        "run_id": run_id or uuid.uuid4().hex,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": wall_seconds,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(), "torch": torch.__version__,
        "source": source, "test_type": args.test_type, "n_train": n_train, "results": results,
        "args": {k: v for k, v in vars(args).items() if k != "explicit"},
    }
