"""The evaluation record of ``test.py`` (spec mdc §11, yoco §6.2): one JSON object per evaluation
appended to ``--results_file`` (settings, per-repeat best/last and curve, mean ± std, wall time,
device), and the ``<results_file>.partial`` file that keeps finished repeats of an interrupted run.
"""
import json
import os
import platform
import time

import torch

from utils.config import UserError, atomic_write_text, jsonable


class PartialRuns:
    """Finished repeats of an evaluation, kept in ``<results_file>.partial`` until the record is
    written, so that re-running the same command after an interruption resumes (never loses runs).
    A partial file from other settings is ignored and replaced."""

    IGNORED = ("explicit", "results_file", "save_subset", "device", "pruning")

    def __init__(self, results_file, args):
        self.path = results_file + ".partial"
        self.key = json.dumps(jsonable({k: v for k, v in sorted(vars(args).items()) if k not in self.IGNORED}))
        self.done = {}
        if os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    st = json.load(f)
                if st.get("key") == self.key:
                    self.done = st["runs"]
            except (OSError, ValueError, KeyError):
                pass

    def save(self, label, runs):
        self.done[label] = runs
        atomic_write_text(self.path, json.dumps({"key": self.key, "runs": jsonable(self.done)}))

    def clear(self):
        if os.path.exists(self.path):
            os.remove(self.path)


def default_results_file(args, source):
    if args.results_file:
        return args.results_file
    if args.slct_type == "random":
        return os.path.join("raid", "results", args.datatag, f"random_ipc{args.ipc}", "test_results.json")
    folder = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
    if args.slct_ipc > 0:  # YOCO logs to condensed_img -> log_{reproduce_exp} (spec yoco §6.2)
        folder = folder.replace("condensed_img", f"log_{args.reproduce_exp}")
    return os.path.join(folder, "test_results.json")


def append_record(path, record):
    """Append one evaluation to a JSON list, atomically (an interrupted write never corrupts it)."""
    records = []
    if os.path.exists(path):
        try:
            with open(path) as f:
                records = json.load(f)
        except (OSError, ValueError):
            raise UserError(f"{path} exists but is not a JSON list of results; pass another --results_file")
    records.append(jsonable(record))
    atomic_write_text(path, json.dumps(records, indent=1))


def make_record(args, device, source, n_train, results, wall_seconds):
    """One evaluation as a JSON-able dict (every setting except the bookkeeping ``explicit`` list)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": wall_seconds,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(), "torch": torch.__version__,
        "source": source, "test_type": args.test_type, "n_train": n_train, "results": results,
        "args": {k: v for k, v in vars(args).items() if k != "explicit"},
    }
