"""Experiment tracking: every run's hyper-parameters, curves, texts and image grids in Aim (the reference's
tracker, ``--use_aim True`` or ``--tracker aim``) or in TensorBoard event files (``--tracker tensorboard``);
docs/tracking.md.

What is tracked is decided in one place per script family and always from values the run has already read
to the host: the condensation loop sends each record it appends to ``metrics.jsonl`` through
``condensation_series`` (so the curves are the records, step for step), ``test.py`` and
``get_training_dynamics.py`` their per-epoch values. Names, contexts and steps are the reference's
(``condense_reg.py``, ``reg_ipcx.py``, YOCO's ``condense.py``, ``test.py`` and ``ccs`` trainer), so Aim queries
and dashboards written for the reference's runs keep working; our additions have names of their own.

A tracker never stops a run and never changes a number: it runs in a child process of its own
(``tracking/backends.py``) that the run only queues calls to, so a slow or hung tracker costs the loop nothing; its
first failure (a locked or full repository, an unreachable Aim server) prints one warning line and turns
tracking off; nothing it does draws from a random generator or touches a value of the run. A resumed run
continues its Aim run (hash in ``run_hash.pt`` of the run folder, as the reference) and re-tracks the steps
after its checkpoint, which Aim overwrites (a sequence holds one value per step); TensorBoard gets a purge event
at the first re-done step, so its readers drop the interrupted run's later steps. Either way no step appears
twice, the rule ``metrics.jsonl`` follows on resume.
"""
import multiprocessing
import os
import queue
import sys
import time

from condensation.mls import first_of, groups, read_frozen, read_mls_record
from utils.errors import UserError

TRACKERS = ("none", "aim", "tensorboard")
PACKAGE = {"aim": "aim", "tensorboard": "tensorboard"}
INSTALL = "pip install -r requirements-tracking.txt"
RUN_HASH = "run_hash.pt"
TB_DIR = "tensorboard"


# ------------------------------------------------------------------------------------------------
# command line (the flags: ``cli.options.add_tracking_args``)


def tracker_of(args):
    """'aim', 'tensorboard' or None, from ``--tracker`` and the reference's ``--use_aim``."""
    kind = getattr(args, "tracker", "none") or "none"
    if getattr(args, "use_aim", False):
        if kind == "tensorboard":
            raise UserError("--use_aim True and --tracker tensorboard name two trackers; pass one of them")
        kind = "aim"
    return None if kind == "none" else kind


def check_tracker(args):
    """Before any work: the package of the chosen tracker imports. One-line error naming the pip command."""
    kind = tracker_of(args)
    if kind is None:
        return None
    flag = "--use_aim True" if kind == "aim" and getattr(args, "use_aim", False) else f"--tracker {kind}"
    try:
        __import__(PACKAGE[kind])
    except ImportError:
        raise UserError(f"{flag} needs the {PACKAGE[kind]} package, which is not installed: {INSTALL} (or run "
                        "without tracking)") from None
    return kind


def mdc_run_name(args):
    """The reference's run name (MDC ``argument.py``): ``--run_name`` (default ``{dataset}_ipc{ipc}``) plus
    ``__{tag}`` (its tag already starts with ``_``), ``_dream``, MDC's ``_{adaptive_period}`` (if not 100) and
    ``_class_wise``, ``_synmax{n}`` (if not 128), ``_idx_{start_idx}``, ``_{nclass_sub}`` and ``_phase{p}``:
    the suffixes of the folder name that it copied."""
    name = args.run_name
    if args.tag:
        name += f"__{args.tag}"
    if args.ipc > 0 and args.slct_type in ("idc", "dream"):
        if args.slct_type == "dream":
            name += "_dream"
        if args.adaptive_reg and args.adaptive_period != 100:
            name += f"_{args.adaptive_period}"
        if args.adaptive_reg and args.adaptive_class_wise:
            name += "_class_wise"
        if args.batch_syn_max != 128:
            name += f"_synmax{args.batch_syn_max}"
        if args.start_idx != 0:
            name += f"_idx_{args.start_idx}"
        if args.nclass_sub > 0:
            name += f"_{args.nclass_sub}"
        if args.phase >= 0:
            name += f"_phase{args.phase}"
    return name


def test_names(args):
    """Experiment and run name of a ``test.py`` evaluation: MDC's (``--exp_name``, default MDC; the MDC run
    name) or, for a YOCO pruned set (``--slct_ipc``) without ``--exp_name``/``--run_name``, YOCO's
    (``YOCO-{dataset}-reproduce``; ``{condense_key}_{dataset}_IPC{ipc}->{slct_ipc}_{pruning_key}``)."""
    explicit = set(getattr(args, "explicit", ()))
    if args.slct_ipc <= 0:
        return args.exp_name, mdc_run_name(args)
    exp = args.exp_name if "exp_name" in explicit else (
        f"YOCO-{args.dataset}-reproduce" if args.dataset in ("cifar10", "cifar100", "imagenet")
        else "idc-eval-selection")
    run = args.run_name if "run_name" in explicit else (
        f"{args.condense_key}_{args.dataset}_IPC{args.ipc}->{args.slct_ipc}_{args.pruning_key}")
    return exp, run


# ------------------------------------------------------------------------------------------------
# what the condensation loop tracks: one record of metrics.jsonl -> its series


def reference_text(values):
    """A d̄ or Δ vector as the reference's text: ``torch.round(float32, decimals=2).tolist()`` printed, float32
    digits and all (``[3.8399999141693115, 2.93...]``)."""
    import torch

    return f"{torch.round(torch.tensor(values, dtype=torch.float32), decimals=2).tolist()}"


def condensation_series(rec, classes, net):
    """The tracked values of one ``metrics.jsonl`` record of a condensation run, as
    ``(kind, name, value, context)`` with kind ``scalar`` or ``text``; the step is the record's ``it``.

    Reference names (MDC ``condense_reg.py``/``reg_ipcx.py``, YOCO ``condense.py``, ``test.py``):
    ``net`` records: the network update's ``top1`` and ``loss`` {subset: model}; ``loss`` records: the matching
    loss as ``loss`` {subset: train}; ``mls`` records (MDC windows): ``regularized_ipc`` "Reg ipc: [x]"
    {subset: class_c} for every class, d̄ as ``loss`` {subset: cur_loss} and Δ as ``loss_list``
    {subset: diff} (texts, ``reference_text``; class-wise: the last class's, as the reference overwrote them);
    ``eval`` records:
    ``best acc`` and ``std`` {subset: ipcN} (plus ``net`` when it is not the run's network).
    Ours: ``last acc`` beside them; ``sec_per_it`` {subset: train}; the frozen prefix ``frozen``, the MLS
    ``mls`` {subset: class_c or all}; Δ and d̄ per prefix ``delta``/``dbar`` {subset: class_c or all, ipc: ipcx}.
    """
    kind = rec.get("type")
    out = []
    if kind == "net":
        out += [("scalar", "top1", rec["top1"], {"subset": "model"}),
                ("scalar", "loss", rec["loss"], {"subset": "model"})]
    elif kind == "loss":
        out.append(("scalar", "loss", rec["loss"], {"subset": "train"}))
        if rec.get("sec_per_it") is not None:
            out.append(("scalar", "sec_per_it", rec["sec_per_it"], {"subset": "train"}))
        frozen = read_frozen(rec)  # the MLS registry's reader (condensation/mls)
        if frozen is not None and frozen[0] and isinstance(first_of(frozen[1]), int):
            out += [("scalar", "frozen", f, {"subset": f"class_{c}"}) for c, f in zip(classes, frozen[1])]
        elif frozen is not None and not frozen[0]:
            out.append(("scalar", "frozen", frozen[1][0], {"subset": "all"}))
    elif kind == "mls":
        r = read_mls_record(rec)  # the MLS registry's reader (condensation/mls)
        mls = r.mls if r.class_wise else r.mls * len(classes)
        for c, x in zip(classes, mls):
            out.append(("text", "regularized_ipc", f"Reg ipc: [{x}]", {"subset": f"class_{c}"}))
        out.append(("text", "loss", reference_text(r.dbar[-1]), {"subset": "cur_loss"}))
        if r.delta[-1] is not None:
            out.append(("text", "loss_list", reference_text(r.delta[-1]), {"subset": "diff"}))
        for who, x, d, dl in groups(r, classes):
            out.append(("scalar", "mls", x, {"subset": who}))
            for name, vec in (("dbar", d), ("delta", dl)):
                for i, v in enumerate(vec or []):
                    if v is not None:
                        out.append(("scalar", name, v, {"subset": who, "ipc": f"ipc{i + 1}"}))
    elif kind == "eval":
        ctx = {"subset": rec["subset"]} if rec["net"] == net else {"subset": rec["subset"], "net": rec["net"]}
        out += [("scalar", "best acc", rec["best"], ctx), ("scalar", "std", rec["best_std"], ctx),
                ("scalar", "last acc", rec["last"], ctx)]
    return out


# ------------------------------------------------------------------------------------------------
# the run's side: calls are queued to the tracker's own process (tracking/backends.py), never awaited

QUEUE_MAX = 20000  # calls the tracker may be behind before it counts as stalled
STALL_SECONDS = 10  # at the end: how long the tracker may make no progress before it is stopped


class Tracker:
    """The run's tracker, or none (``Tracker(None)``: every call does nothing). The backend lives in a child
    process (``tracking.backends.serve``); every call only queues. The first failure it reports, a full queue or,
    at ``close``, no progress for ``STALL_SECONDS`` prints one warning line (``warn``), stops the child and turns
    tracking off; the run goes on."""

    def __init__(self, kind=None, params=None, warn=None, mapper=None):
        self.warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
        self.mapper, self.proc = mapper, None
        if kind is None:
            return
        from tracking.backends import serve

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the run's threads or state
        self.calls, self.status, self.done = ctx.Queue(QUEUE_MAX), ctx.Queue(), ctx.Value("q", 0)
        self.sent = 0
        self.proc = ctx.Process(target=serve, args=(kind, params, self.calls, self.status, self.done, os.getpid()),
                                daemon=True, name=f"tracker-{kind}")
        self.proc.start()

    @property
    def active(self):
        return self.proc is not None

    def _reported(self):
        try:
            return self.status.get_nowait()[1]
        except queue.Empty:
            return None

    def _call(self, *msg):
        if self.proc is None:
            return
        error = self._reported()
        if error is not None:
            return self.fail(error)
        try:
            self.calls.put_nowait(msg)
            self.sent += 1
        except queue.Full:
            self.fail(f"it fell {QUEUE_MAX} calls behind")

    def fail(self, why):
        """One warning line; the child is stopped, tracking is off from here on."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.join()
            self.calls.cancel_join_thread()  # what is still queued is dropped: exiting must not wait on a dead reader
        self.warn(f"warning: experiment tracking stopped ({why}); the run goes on untracked")

    def hparams(self, values, text, step):
        self._call("hparams", values, text, step)

    def scalar(self, name, value, step, context=None, epoch=None):
        self._call("scalar", name, value, step, context, epoch)

    def text(self, name, value, step, context=None):
        self._call("text", name, value, step, context)

    def image(self, name, png, step, context=None, caption=""):
        self._call("image", name, png, step, context, caption)

    def export(self, path, args_text, log_path):
        self._call("export", path, args_text, log_path)

    def record(self, rec):
        """One ``metrics.jsonl`` record through the tracker's mapping (``condensation_series``)."""
        if self.proc is None or self.mapper is None:
            return
        for kind, name, value, ctx in self.mapper(rec):
            if kind == "scalar" and value is not None:
                self.scalar(name, value, rec["it"], ctx)
            elif kind == "text":
                self.text(name, value, rec["it"], ctx)

    def close(self):
        """Let the tracker finish what is queued and end; stop it if it makes no progress for STALL_SECONDS."""
        if self.proc is None:
            return
        self.calls.put(None)
        last, since = -1, time.time()
        while self.proc.is_alive() and time.time() - since < STALL_SECONDS:
            self.proc.join(0.05)
            if self.done.value != last:
                last, since = self.done.value, time.time()
        error = self._reported()
        if error is not None or self.proc.is_alive():
            return self.fail(error or f"it made no progress for {STALL_SECONDS} s with {self.sent - last} calls "
                                      "left")
        self.proc.join()
        self.proc = None


def open_tracker(args, *, kind, folder, tb_folder=None, experiment, name, hparams, resume_from=None, warn=None,
                 mapper=None, keep_hash=True, tag=""):
    """The run's ``Tracker``: Aim (a resumed run, ``resume_from``: its first re-done step, continues the Aim run of
    the folder's ``run_hash.pt``; a new run's hash is written there, as the reference, unless ``keep_hash`` is
    False) or TensorBoard (event files in ``tb_folder``, default ``<folder>/tensorboard``, purged from
    ``resume_from`` on). The hyper-parameters are tracked at step 0, or at ``resume_from`` (the resumed run's
    settings). ``tag``: an Aim tag (the reference's ``--run_tag``). A tracker that fails to open is a warning
    (at its first call after that), not an error: the run goes on untracked."""
    if kind is None:
        return Tracker(None, warn=warn)
    import yaml

    from utils.files import load_torch

    if kind == "aim":
        hash_path = os.path.join(folder, RUN_HASH) if keep_hash else None
        old = None
        if resume_from is not None and hash_path and os.path.exists(hash_path):
            try:
                old = load_torch(hash_path, "Aim run hash", "")
            except UserError:  # a damaged hash file: the rest of the run becomes a new Aim run
                old = None
        params = {"repo": args.aim_repo, "experiment": experiment, "name": name, "tag": tag, "hash_path": hash_path,
                  "run_hash": old if isinstance(old, str) else None}
    else:  # the resumed run re-does the steps after its checkpoint: TensorBoard's readers drop the earlier ones
        params = {"folder": tb_folder or os.path.join(folder, TB_DIR), "purge_step": resume_from}
    tracker = Tracker(kind, params, warn=warn, mapper=mapper)
    tracker.hparams(hparams, yaml.safe_dump(hparams, sort_keys=True), resume_from or 0)
    return tracker


def export_path(folder, run_name):
    """The reference's ``aim_export`` file: ``<folder>/<run name>_<time>.txt``."""
    return os.path.join(folder, f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}.txt")
