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
import functools
import hashlib
import json
import os
import platform
import re
import time
import uuid
from collections import namedtuple

from utils.config import jsonable, to_json
from utils.errors import UserError
from utils.fields import Fields
from utils.files import atomic_write_text, check_output_file, load_yaml_mapping, locked, read_jsonl


class PartialRuns:
    """Finished repeats of an evaluation, kept in ``<results_file>.<settings hash>.partial`` until the record
    is written, so that re-running the same command after an interruption resumes (never loses runs).
    The file name carries a hash of the settings: evaluations with other settings that share the results file
    (the IPC-y prefixes of a table, run in parallel) keep their own; a file whose content is of other
    settings anyway (a hash collision), or no JSON object, is ignored and replaced; one of these settings is checked
    field by field, as the repeats of a record (``read_record``)."""

    IGNORED = ("explicit", "results_file", "save_subset", "device", "pruning")
    # options added after .partial files existed: left out of the key at their default (off), so an evaluation
    # interrupted before they existed still finds its finished repeats
    LATER = {"val_per_class": 0, "val_seed": 0}

    def __init__(self, results_file, args):
        self.key = json.dumps(jsonable({k: v for k, v in sorted(vars(args).items())
                                        if k not in self.IGNORED and self.LATER.get(k, object()) != v}))
        self.path = partial_path(results_file, self.key)
        self.done, self.run_id, self.prior_seconds = {}, uuid.uuid4().hex, 0.0
        self.started = time.time()
        if os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                st = None
            if isinstance(st, dict) and st.get("key") == self.key:
                f = Fields(st, self.path, "delete it (its finished repeats are run again)")
                runs = f.sub("runs")
                for net in runs.doc:  # every repeat checked as in a record (read_record)
                    for run in runs.each(net):
                        _run(run)
                self.done = runs.doc
                self.run_id = f.get("run_id", str, default=self.run_id, nonempty=True)
                self.prior_seconds = float(f.get("seconds", float, default=0.0, finite=True, lo=0))

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
TEST_TYPES = ("other", "cx_cy", "baseline_b")
ACCURACY = dict(finite=True, lo=0, hi=100)  # an accuracy in percent
SPREAD = dict(finite=True, lo=0, hi=100)    # a std of accuracies

ACCURACIES = ("best", "best_on_val", "last")  # per repeat and summarised: best on test, at the epoch best on
# validation (--val_per_class), of the final epoch (evaluation.protocol.train_protocol)

Evaluation = namedtuple("Evaluation", "test_type n_train args nets protocol")
Evaluation.__doc__ = """One record of a results file, checked (``read_record``): ``args`` holds the settings the
report reads (``REPORTED_ARGS``, defaults filled in); ``nets`` is {network: ``NetResult``} in the record's order;
``protocol`` its protocol card (``protocol_card``), None for a record without one (protocol unknown)."""
NetResult = namedtuple("NetResult", "values std")
NetResult.__doc__ = """{accuracy (``ACCURACIES``): the value of every repeat}, for the accuracies every repeat holds;
for a record that lists no repeats, its summaries' means, with their stds in ``std`` ({} otherwise)."""

# the settings of a record's args that the report reads: (key, type, default (None: required), range)
REPORTED_ARGS = (("dataset", str, None, None), ("nclass", int, None, ">= 1"), ("ipc", int, None, "-1 or >= 1"),
                 ("factor", int, 1, ">= 1"), ("ipcy", int, -1, "-1 or >= 1"), ("slct_ipc", int, 0, ">= 0"),
                 ("run_tag", str, "", None), ("pruning_key", str, "", None), ("condense_key", str, "idc", None),
                 ("reproduce_exp", str, "", None))


def read_record(doc, source, fix, index):
    """``Evaluation`` of one record of ``make_record``'s layout, every field checked (utils/fields.py): the
    bookkeeping strings, ``test_type``, ``n_train`` >= 1, the reported settings (``REPORTED_ARGS``, their
    ranges and the test type's rules), per network the repeats (``best`` and the optional ``best_on_val``/``last``
    accuracies in 0..100, the test and validation curves' points, seconds) and the ``best``/``best_on_val``/``last``
    summaries (mean in 0..100, std >= 0), all finite, and the protocol card when the record has one (``_card``; a
    record without one reads as protocol unknown). A bad field is a one-line ``UserError`` naming the file, the
    record (its position in the list), the field and ``fix``."""
    r = Fields(doc, source, fix, index=index)
    for key in ("run_id", "time", "device", "device_name", "torch", "source"):
        r.get(key, str, default=None)
    r.get("wall_seconds", (float, None), default=None, finite=True, lo=0)
    test_type = r.get("test_type", str, choices=TEST_TYPES)
    n_train = r.get("n_train", int, lo=1)
    a = r.sub("args")
    args = {k: a.get(k, t, valid=valid, nonempty=k == "dataset", **({} if d is None else {"default": d}))
            for k, t, d, valid in REPORTED_ARGS}
    ipc, ipcy = args["ipc"], args["ipcy"]
    if test_type != "other" and not 1 <= ipcy <= ipc:  # an IPC-y prefix (evaluation/sources.py, validate_args)
        a.fail(f"is {ipcy} with ipc {ipc}: a {test_type} record evaluates IPC-y of an IPC-N set, 1 <= y <= N",
               "ipcy")
    if 0 < ipc <= args["slct_ipc"]:
        a.fail(f"is {args['slct_ipc']} with ipc {ipc}: YOCO prunes IPC_F to a smaller IPC_T", "slct_ipc")
    if test_type == "other" and ipc < 0 and round(n_train / (args["nclass"] * args["factor"] ** 2)) < 1:
        r.fail(f"is {n_train}: less than one image per class (nclass {args['nclass']}, factor {args['factor']}), "
               "the IPC the report derives when ipc is -1", "n_train")
    res = r.sub("results")
    if not res.doc:
        res.fail("is empty (no evaluation network)")
    nets, listed = {}, {}
    for net in res.doc:
        n = res.sub(net)
        runs = [_run(x) for x in n.each("runs", default=[])]
        listed[net] = len(runs)
        summary = {k: _summary(n, k, required=k == "best" and not runs) for k in ACCURACIES}
        if runs:
            nets[net] = NetResult({k: [x[k] for x in runs] for k in ACCURACIES if all(x[k] is not None for x in runs)},
                                  {})
        else:
            nets[net] = NetResult({k: [s["mean"]] for k, s in summary.items() if s},
                                  {k: s["std"] for k, s in summary.items() if s})
    card = _card(r.sub("protocol"), listed) if r.has("protocol") else None
    return Evaluation(test_type, n_train, args, nets, card)


def _run(run):
    """One repeat of ``evaluation.protocol.train_protocol``, checked: its accuracies ({kind: value or None},
    ``ACCURACIES``; ``best`` required), the test and held-out validation curves and its seconds."""
    for key in ("curve", "val_curve"):
        _curve(run, key)
    run.get("seconds", float, default=None, finite=True, lo=0)
    return {k: run.get(k, float, **({} if k == "best" else {"default": None}), **ACCURACY) for k in ACCURACIES}


def _curve(run, key):
    """``[[epoch, accuracy], ...]`` under ``key`` (when present): epochs >= 1, accuracies in 0..100."""
    for i, point in enumerate(run.items(key, list, default=[])):
        if len(point) != 2:
            run.fail(f"is {json.dumps(point)[:40]}, expected [epoch, accuracy]", (key, i))
        run.check((key, i, 0), point[0], int, lo=1)
        run.check((key, i, 1), point[1], float, **ACCURACY)


def _summary(net, key, required):
    """The ``{"mean", "std"}`` of ``evaluation.protocol.summarize`` under ``key``, checked (None when missing and
    not ``required``)."""
    if not (required or net.has(key)):
        return None
    s = net.sub(key)
    return {"mean": s.get("mean", float, **ACCURACY), "std": s.get("std", float, **SPREAD)}


# the protocol card of a record (docs/evaluating.md#protocol-card-and-report): (field, type, checks); ``None`` in a
# type: null, where the setting has no effect (dsa_strategy without DSA, mix_p and beta without CutMix, val_seed
# without validation) or is unknown (wall_seconds)
CARD_FIELDS = (("epochs", int, dict(lo=1)), ("lr", float, dict(finite=True, valid="> 0")),
               ("lr_gamma", float, dict(finite=True, lo=0)), ("lr_milestones", list, {}),
               ("momentum", float, dict(finite=True, lo=0, hi=1)), ("weight_decay", float, dict(finite=True, lo=0)),
               ("batch_size", int, dict(lo=1)), ("dsa", bool, {}), ("dsa_strategy", (str, None), {}),
               ("mixup", str, dict(choices=("vanilla", "cut"))), ("mix_p", (float, None), dict(finite=True, lo=0, hi=1)),
               ("beta", (float, None), dict(finite=True, valid="> 0")), ("repeats", int, dict(lo=1)),
               ("val_per_class", int, dict(lo=0)), ("val_seed", (int, None), {}), ("accuracies", list, {}),
               ("precision", str, dict(nonempty=True)), ("device", str, dict(nonempty=True)), ("device_name", str, {}),
               ("torch", str, {}), ("wall_seconds", (float, None), dict(finite=True, lo=0)))
# per evaluation network: the settings its constructor is given (models.create_model; shorthands such as
# resnet10_bn fix their own) and the seed of every repeat (evaluation.protocol.repeat_seed; null: unseeded)
NET_FIELDS = (("depth", int, dict(lo=1)), ("width", float, dict(finite=True, valid="> 0")),
              ("norm_type", str, dict(nonempty=True)), ("seeds", (list, None), {}))


def cpu_name():
    """The CPU model (``/proc/cpuinfo``'s model name on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith(("model name", "Model", "Hardware"))]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def protocol_card(args, results, machine, wall_seconds):
    """The protocol card of an evaluation (docs/evaluating.md#protocol-card-and-report): how every network of
    ``results`` was trained and validated (``evaluation.protocol.train_protocol``), how often, which accuracies the
    record holds, and where (``machine``: device, device_name, torch)."""
    from evaluation.protocol import milestones, repeat_seed
    from models import convnet_depth

    g = functools.partial(getattr, args)
    epochs, seed, repeats, cut, val = g("epochs", None), g("seed", None), g("repeat", 1), g("mixup", None) == "cut", \
        g("val_per_class", 0)
    depth = g("depth", None)

    def net(i, label):
        seeds = None if seed is None or seed < 0 else [repeat_seed(seed, i, r) for r in range(repeats)]
        return {"depth": convnet_depth(depth) if label == "convnet" and depth else depth, "width": g("width", None),
                "norm_type": g("norm_type", None), "seeds": seeds}

    return {
        "nets": {label: net(i, label) for i, label in enumerate(results)},
        "epochs": epochs, "lr": g("lr", None), "lr_gamma": 0.2,  # MultiStepLR x0.2 (train_protocol)
        "lr_milestones": milestones(epochs) if isinstance(epochs, int) else None,
        "momentum": g("momentum", None), "weight_decay": g("weight_decay", None), "batch_size": g("batch_size", None),
        "dsa": g("dsa", None), "dsa_strategy": g("dsa_strategy", None) if g("dsa", None) else None,
        "mixup": g("mixup", None), "mix_p": g("mix_p", None) if cut else None, "beta": g("beta", None) if cut else None,
        "repeats": repeats, "val_per_class": val, "val_seed": g("val_seed", 0) if val else None,
        "accuracies": [k for k in ACCURACIES if all(k in r for r in results.values())],
        "precision": g("precision", "fp32"), **machine, "wall_seconds": wall_seconds,
    }


def _card(c, listed):
    """The checked protocol card ``c`` (``Fields``) of a record whose networks list ``listed`` {net: repeats}:
    every field of ``CARD_FIELDS`` and, per network of the record's results, of ``NET_FIELDS``; the repeats and
    seeds agree with the record's."""
    card = {k: c.get(k, t, **checks) for k, t, checks in CARD_FIELDS}
    c.items("lr_milestones", int, lo=0)
    c.items("accuracies", str, nonempty=True, choices=ACCURACIES)
    nets = c.sub("nets")
    if set(nets.doc) != set(listed):
        nets.fail(f"is for {', '.join(sorted(nets.doc)) or 'no network'}, but the record's results are of "
                  f"{', '.join(sorted(listed))}")
    card["nets"] = {}
    for name, runs in listed.items():
        n = nets.sub(name)
        card["nets"][name] = {k: n.get(k, t, **checks) for k, t, checks in NET_FIELDS}
        seeds = n.items("seeds", int) if card["nets"][name]["seeds"] is not None else []
        for what, count in (("runs", runs), ("seeds", len(seeds))):
            if count and count != card["repeats"]:
                c.fail(f"is {card['repeats']}, but results.{name} lists {count} {what}", "repeats")
    return card


def net_protocol(card, net):
    """The protocol of one network of a record's card (``net`` and its ``NET_FIELDS`` beside the card's other
    fields), as the report compares cells; None for a record without a card (protocol unknown)."""
    if card is None:
        return None
    return {**{k: v for k, v in card.items() if k != "nets"}, "net": net, **card["nets"][net]}


def _parse(path, fix, found=False):
    """The JSON list of records in ``path``, its shape checked (``records_problem``); ``found``: a file found in a
    folder, None when it is not JSON or not such a list."""
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
    if problem and found:
        return None
    if problem:
        raise UserError(f"{path} is not a results file of test.py: not a JSON list of records ({problem}); {fix}")
    return data


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


def load_records(path, fix, record_fix=None):
    """The records of an existing results file, every field checked (``read_record``); anything else (not JSON,
    not a list of records, a bad field) is a one-line ``UserError`` naming the file, what is wrong and ``fix``
    (``record_fix`` for a bad field of a record, when given)."""
    data = _parse(path, fix)
    for i, rec in enumerate(data):
        read_record(rec, path, record_fix or fix, i)
    return data


def load_evaluations(path, fix, record_fix=None, found=False):
    """The checked records (``Evaluation``) of a results file the report reads (``load_records``): it must hold
    at least one. ``found``: a file found in a folder, None when it is not JSON or not a non-empty list of
    records (a list of records with a bad field is an error all the same)."""
    data = _parse(path, fix, found)
    if data is None or (found and not data):
        return None
    if not data:
        raise UserError(f"{path} holds no records (an empty list); {fix}")
    return [read_record(rec, path, record_fix or fix, i) for i, rec in enumerate(data)]


RECORD_FIX = "repair or remove that record, or re-run its evaluation with test.py"


def read_records(path):
    """The records of ``test.py``'s results file ([] when it does not exist); a damaged file is a one-line
    error."""
    if not os.path.exists(path):
        return []
    return load_records(path, "pass another --results_file (or move this file away)",
                        "repair or remove that record, or pass another --results_file")


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
    """One evaluation as a JSON-able dict (every setting except the bookkeeping ``explicit`` list), with its
    protocol card (``protocol_card``)."""
    import torch

    machine = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
               else cpu_name(), "torch": torch.__version__}
    return {
        "run_id": run_id or uuid.uuid4().hex,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": wall_seconds, **machine,
        "source": source, "test_type": args.test_type, "n_train": n_train, "results": results,
        "args": {k: v for k, v in vars(args).items() if k != "explicit"},
        "protocol": protocol_card(args, results, machine, wall_seconds),
    }


# ------------------------------------------------------------------------------------------------
# the files of a condensation run that the report and a resume read (condensation/run_files.py reads them here:
# evaluation sits below condensation in the layering of docs/DESIGN.md)

METRIC_TYPES = ("net", "loss", "mls", "save", "eval")  # what condensation/loop.py writes
METRICS_FIX = "remove its damaged lines (each line is one JSON object of the run) or pass another run folder"


def _metrics_net(r):
    r.get("top1", float, **ACCURACY)
    r.get("loss", float, finite=True, lo=0)


def _metrics_loss(r):
    r.get("loss", float, default=None, finite=True)
    r.tree("mls", int, 2, default=None, lo=1)  # the active MLS: [x] (global) or one such list per class
    r.tree("frozen", int, 1, default=None, lo=-1)  # the frozen prefix (-1: none): x, or one per class
    r.get("seconds", float, default=None, finite=True, lo=0)
    r.get("sec_per_it", (float, None), default=None, finite=True, lo=0)


def _metrics_mls(r):
    """``condensation.mls.mls_record``: one decision, or one per class (lists); d̄ and Δ per prefix (null: none)."""
    mls = r.tree("mls", int, 1, lo=1)
    depth = 2 if isinstance(mls, list) else 1
    for key in ("dbar", "delta"):
        r.tree(key, (float, None), depth, default=None, finite=True)


def _metrics_save(r):
    r.get("file", str, nonempty=True)


def _metrics_eval(r):
    subset = r.get("subset", str)
    if not re.fullmatch(r"ipc[1-9]\d*", subset):
        r.fail(f"is {subset!r}, expected ipcN (the IPC-N subset evaluated)", "subset")
    r.get("net", str, nonempty=True)
    r.get("best", float, **ACCURACY)
    r.get("best_std", float, **SPREAD)
    r.get("last", float, **ACCURACY)
    r.get("epochs", int, default=None, lo=1)


METRIC_FIELDS = {"net": _metrics_net, "loss": _metrics_loss, "mls": _metrics_mls, "save": _metrics_save,
                 "eval": _metrics_eval}


def read_metrics_file(path, fix):
    """The records of a run's ``metrics.jsonl`` (``utils.files.read_jsonl``: one JSON object a line, a line cut by
    a kill skipped), every field checked: ``type`` one of ``METRIC_TYPES``, ``it`` >= 0 and the fields of its type
    (``METRIC_FIELDS``: accuracies in 0..100, finite numbers, MLS >= 1, frozen >= -1, ...). A bad field is a
    one-line ``UserError`` naming the file, the line, the field and ``fix``."""
    records = read_jsonl(path, fix)
    with open(path, "rb") as f:  # read_jsonl keeps the non-blank lines, in order
        lines = [n for n, text in enumerate(f.read().split(b"\n"), 1) if text.strip()]
    for rec, line in zip(records, lines):
        r = Fields(rec, path, fix, index=line, unit="line")
        kind = r.get("type", str, choices=METRIC_TYPES)
        r.get("it", int, lo=0)
        METRIC_FIELDS[kind](r)
    return records


def read_run_args(path, fix, like=None, keys=()):
    """A run's ``args.yaml`` (``utils.files.save_config``) as a mapping, checked: ``dataset`` a non-empty string,
    and with ``like`` (the settings of the command that reads it) every key of ``keys`` that both have of the
    type of the command's value (or null), numbers finite (every number option refuses NaN/Inf, utils/ranges.py).
    A bad field is a one-line ``UserError`` naming the file, the field and ``fix``."""
    doc = load_yaml_mapping(path, "run settings", fix)
    r = Fields(doc, path, fix)
    for key in doc:
        if not isinstance(key, str):
            r.fail(f"is a key of type {type(key).__name__}, expected setting names", str(key))
    r.get("dataset", str, default=None, nonempty=True)
    for key in keys if like is not None else ():
        if key in like:
            r.like(key, like[key], finite=True)
    return doc
