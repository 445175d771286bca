"""Experiment tracking: every run's hyper-parameters, curves, texts and image grids in Aim (the reference's
tracker, ``--use_aim True`` or ``--tracker aim``) or in TensorBoard event files (``--tracker tensorboard``);
docs/tracking.md.

What is tracked is decided in one place per script family and always from values the run has already read
to the host: the condensation loop sends each record it appends to ``metrics.jsonl`` through
``condensation_series`` (so the curves are the records, step for step), ``test.py`` and
``get_training_dynamics.py`` their per-epoch values. Names, contexts and steps are the reference's
(``condense_reg.py``, ``reg_ipcx.py``, YOCO's ``condense.py``, ``test.py`` and ``ccs`` trainer), so Aim queries
and dashboards written for the reference's runs keep working; our additions have names of their own.

A tracker never stops a run and never changes a number: the first failing call (a locked or full repository,
an unreachable Aim server) prints one warning line and turns tracking off; nothing it does draws from a random
generator or touches a value of the run. A resumed run continues its Aim run (hash in ``run_hash.pt`` of the run
folder, as the reference) and re-tracks the steps after its checkpoint, which Aim overwrites (a sequence holds one
value per step); TensorBoard gets a purge event at the resume step, so its readers drop the interrupted run's
later steps. Either way no step appears twice, the rule ``metrics.jsonl`` follows on resume.
"""
import io
import os
import socket
import sys
import time

from utils.errors import UserError

TRACKERS = ("none", "aim", "tensorboard")
PACKAGE = {"aim": "aim", "tensorboard": "tensorboard"}
INSTALL = "pip install -r requirements-tracking.txt"
RUN_HASH = "run_hash.pt"
TB_DIR = "tensorboard"


# ------------------------------------------------------------------------------------------------
# command line (the flags: ``utils.options.add_tracking_args``)


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
    try:
        __import__(PACKAGE[kind])
    except ImportError:
        raise UserError(f"--{'use_aim True' if kind == 'aim' and getattr(args, 'use_aim', False) else 'tracker ' + kind}"
                        f" needs the {PACKAGE[kind]} package, which is not installed: {INSTALL} (or run without "
                        "tracking)") from None
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


def _text(v):
    return f"{v}"


def condensation_series(rec, classes, net):
    """The tracked values of one ``metrics.jsonl`` record of a condensation run, as
    ``(kind, name, value, context)`` with kind ``scalar`` or ``text``; the step is the record's ``it``.

    Reference names (MDC ``condense_reg.py``/``reg_ipcx.py``, YOCO ``condense.py``, ``test.py``):
    ``net`` records: the network update's ``top1`` and ``loss`` {subset: model}; ``loss`` records: the matching
    loss as ``loss`` {subset: train}; ``mls`` records (MDC windows): ``regularized_ipc`` "Reg ipc: [x]"
    {subset: class_c} for every class, d̄ (2 decimals) as ``loss`` {subset: cur_loss} and Δ as ``loss_list``
    {subset: diff} (texts; class-wise: the last class's, as the reference overwrote them); ``eval`` records:
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
        frozen = rec.get("frozen")
        if isinstance(frozen, list) and frozen and isinstance(frozen[0], int):
            out += [("scalar", "frozen", f, {"subset": f"class_{c}"}) for c, f in zip(classes, frozen)]
        elif isinstance(frozen, int):
            out.append(("scalar", "frozen", frozen, {"subset": "all"}))
    elif kind == "mls":
        wise = isinstance(rec["mls"], list)
        mls = rec["mls"] if wise else [rec["mls"]] * len(classes)
        dbar = rec["dbar"] if wise else [rec["dbar"]]
        delta = rec["delta"] if wise else [rec["delta"]]
        for c, x in zip(classes, mls):
            out.append(("text", "regularized_ipc", f"Reg ipc: [{x}]", {"subset": f"class_{c}"}))
        out.append(("text", "loss", _text(_round2(dbar[-1])), {"subset": "cur_loss"}))
        if delta[-1] is not None:
            out.append(("text", "loss_list", _text(_round2(delta[-1])), {"subset": "diff"}))
        groups = list(zip([f"class_{c}" for c in classes], mls, dbar, delta)) if wise else [
            ("all", rec["mls"], rec["dbar"], rec["delta"])]
        for who, x, d, dl in groups:
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


def _round2(v):
    if isinstance(v, list):
        return [_round2(x) for x in v]
    return round(v, 2) if isinstance(v, float) else v


# ------------------------------------------------------------------------------------------------
# the trackers


class AimRun:
    """One Aim run (``aim.Run``): scalars and texts with the reference's names and contexts, images as
    ``aim.Image``. System metrics and terminal capture are off (``log.txt`` is the terminal log)."""

    def __init__(self, repo, experiment, name, run_hash=None, tag=""):
        from aim import Run

        self.run = Run(run_hash=run_hash, repo=repo, experiment=experiment, system_tracking_interval=None,
                       capture_terminal_logs=False)
        self.run.name = name
        if tag:
            self.run.add_tag(tag)
        self.hash = self.run.hash

    def hparams(self, values, text):
        self.run["hparams"] = values

    def scalar(self, name, value, step, context, epoch=None):
        self.run.track(value, name=name, step=step, epoch=epoch, context=context or {})

    def text(self, name, value, step, context):
        from aim import Text

        self.run.track(Text(value), name=name, step=step, context=context or {})

    def image(self, name, png, step, context, caption):
        from aim import Image
        from PIL import Image as PILImage

        self.run.track(Image(PILImage.open(io.BytesIO(png)), caption=caption), name=name, step=step,
                       context=context or {})

    def close(self):
        self.run.close()


def tb_tag(name, context):
    """TensorBoard tag of an Aim (name, context): ``name/value/value`` (``best acc/ipc10``, ``top1/model``)."""
    return "/".join([name] + [str(v) for v in (context or {}).values()])


class TensorBoardRun:
    """TensorBoard event file ``<folder>/events.out.tfevents.*``, written synchronously in the calling thread
    (no writer thread that could fail out of sight): scalars, texts, PNG images and the hyper-parameters
    (HPARAMS tab, and the run's ``args.yaml`` as the text ``args.yaml``). ``purge_step``: a resumed run's
    first step; TensorBoard drops the earlier file's events from that step on."""

    def __init__(self, folder, purge_step=None):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.Event = Event
        os.makedirs(folder, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{time.monotonic_ns()}"
        self.file = open(os.path.join(folder, name), "wb")
        self.writer = RecordWriter(self.file)
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step:
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def _write(self, event):
        self.writer.write(event.SerializeToString())
        self.file.flush()

    def _summary(self, summary, step):
        self._write(self.Event(wall_time=time.time(), step=step, summary=summary))

    def hparams(self, values, text):
        from torch.utils.tensorboard.summary import hparams

        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
        for s in hparams(flat, {}):
            self._summary(s, 0)
        self.text("args.yaml", text, 0, None)

    def scalar(self, name, value, step, context, epoch=None):
        from torch.utils.tensorboard.summary import scalar

        self._summary(scalar(tb_tag(name, context), float(value)), step)

    def text(self, name, value, step, context):
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        tensor = TensorProto(dtype="DT_STRING", string_val=[value.encode()],
                             tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        self._summary(Summary(value=[Summary.Value(tag=tb_tag(name, context), metadata=meta, tensor=tensor)]), step)

    def image(self, name, png, step, context, caption):
        from PIL import Image as PILImage
        from tensorboard.compat.proto.summary_pb2 import Summary

        w, h = PILImage.open(io.BytesIO(png)).size
        img = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=png)
        self._summary(Summary(value=[Summary.Value(tag=tb_tag(name, context), image=img)]), step)

    def close(self):
        self.file.close()


class Tracker:
    """The run's tracker, or none (``Tracker(None)``: every call does nothing). Every call is guarded: the
    first exception prints one warning line (``warn``), closes the backend quietly and turns tracking off."""

    def __init__(self, backend, warn=None, mapper=None):
        self.backend, self.mapper = backend, mapper
        self.warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))

    @property
    def active(self):
        return self.backend is not None

    def _call(self, method, *a):
        if self.backend is None:
            return
        try:
            getattr(self.backend, method)(*a)
        except Exception as e:  # noqa: BLE001 -- whatever the tracker's failure, the run goes on
            self.fail(e)

    def fail(self, e):
        backend, self.backend = self.backend, None
        what = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        self.warn(f"warning: experiment tracking stopped ({type(e).__name__}: {what}); the run goes on untracked")
        try:
            backend.close()
        except Exception:  # noqa: BLE001 -- a failed tracker may fail to close as well
            pass

    def scalar(self, name, value, step, context=None, epoch=None):
        self._call("scalar", name, value, step, context, epoch)

    def text(self, name, value, step, context=None):
        self._call("text", name, value, step, context)

    def image(self, name, png, step, context=None, caption=""):
        self._call("image", name, png, step, context, caption)

    def record(self, rec):
        """One ``metrics.jsonl`` record through the tracker's mapping (``condensation_series``)."""
        if self.backend is None or self.mapper is None:
            return
        for kind, name, value, ctx in self.mapper(rec):
            if kind == "scalar" and value is not None:
                self.scalar(name, value, rec["it"], ctx)
            elif kind == "text":
                self.text(name, value, rec["it"], ctx)

    def close(self):
        backend, self.backend = self.backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception as e:  # noqa: BLE001
                self.backend = backend
                self.fail(e)


def open_tracker(args, *, kind, folder, tb_folder=None, experiment, name, hparams, resume_step=0, warn=None,
                 mapper=None, keep_hash=True, tag=""):
    """The run's ``Tracker``: Aim (a resumed run, ``resume_step`` > 0, continues the Aim run of the folder's
    ``run_hash.pt``; a new run's hash is written there, as the reference, unless ``keep_hash`` is False) or
    TensorBoard (event files in ``tb_folder``, default ``<folder>/tensorboard``, purged from ``resume_step`` on).
    ``tag``: an Aim tag (the reference's ``--run_tag``). Failing to open is a warning, not an error: the run goes
    on untracked."""
    tracker = Tracker(None, warn, mapper)
    if kind is None:
        return tracker
    import yaml

    from utils.files import atomic_save, load_torch

    text = yaml.safe_dump(hparams, sort_keys=True)
    try:
        if kind == "aim":
            hash_path = os.path.join(folder, RUN_HASH)
            old = None
            if resume_step > 0 and keep_hash and os.path.exists(hash_path):
                try:
                    old = load_torch(hash_path, "Aim run hash", "")
                except UserError:  # a damaged hash file: the rest of the run becomes a new Aim run
                    old = None
                old = old if isinstance(old, str) else None
            backend = AimRun(args.aim_repo, experiment, name, run_hash=old, tag=tag)
            if keep_hash:
                atomic_save(backend.hash, hash_path)
        else:
            backend = TensorBoardRun(tb_folder or os.path.join(folder, TB_DIR), purge_step=resume_step)
        tracker.backend = backend
        backend.hparams(hparams, text)
    except Exception as e:  # noqa: BLE001 -- e.g. an unreachable Aim server, a locked or full repository
        if tracker.backend is None:
            tracker.backend = _Closed()
        tracker.fail(e)
    return tracker


class _Closed:
    def close(self):
        pass


def export_log(tracker, folder, run_name, hparams, log_path):
    """The reference's ``aim_export``: ``<folder>/<run name>_<time>.txt`` with the creation time, the arguments
    and the run's terminal log (our ``log.txt``), written at the end of an Aim-tracked run."""
    if not isinstance(tracker.backend, AimRun):
        return None
    from utils.files import atomic_write_text

    try:
        with open(log_path) as f:
            lines = f.read()
    except OSError:
        lines = ""
    path = os.path.join(folder, f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}.txt")
    try:
        created = tracker.backend.run.created_at
    except Exception:  # noqa: BLE001
        created = ""
    atomic_write_text(path, f"created_at: {created}\n{hparams}\n{lines}")
    return path
