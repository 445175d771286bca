"""The tracker backends (``aim.Run``, TensorBoard event files) and ``serve``, the loop of the child process that
runs them (``tracking.client.Tracker``): the run only queues its calls, so a slow, hung or failing tracker (a full
disk can leave Aim's database waiting forever) never holds up or stops the run.
"""
import io
import os
import queue
import random
import signal
import socket
import threading
import time

BACKENDS = {}
OPEN_WAIT = 30  # seconds a resumed run's tracker waits for the killed run's tracker to let the Aim run go
NEW_REPO_WAIT = 3  # seconds of retries when opening fails otherwise (a repository another process is creating)


def serve(kind, params, calls, status, done, parent):
    """The child's loop. A reader thread moves each queued ``(method, *args)`` from the run's queue into this
    process at once (the run's writes never wait on a backend that is still opening or busy, and what the run
    queued before it was killed is here, not in a pipe); the loop runs them on the backend until ``None`` (the run
    closed its tracker), or until nothing more arrives and the run's process is gone (killed: what it tracked is
    kept; a call it left half written is never read). Reports ``("error", text)`` on ``status`` and stops at the
    first failure."""
    # Ctrl+C and SIGTERM (Slurm signals every process of the job, ``kill -TERM -PGID`` the group) are the run's to
    # handle: it closes the tracker, which finishes what was queued; a run that dies instead ends it too (below)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = queue.Queue()

    def read():
        while True:
            msg = calls.get()
            inbox.put(msg)
            if msg is None:
                return
    threading.Thread(target=read, daemon=True, name="tracker-reader").start()
    try:
        backend = BACKENDS[kind](**params)
        while True:
            try:
                msg = inbox.get(timeout=0.5)
            except queue.Empty:
                if os.getppid() != parent:
                    break
                continue
            if msg is None:
                break
            getattr(backend, msg[0])(*msg[1:])
            with done.get_lock():
                done.value += 1
        backend.close()
    except BaseException as e:  # noqa: BLE001 -- reported to the run, which goes on untracked
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        status.put(("error", f"{type(e).__name__}: {text}"))


class AimRun:
    """One Aim run (``aim.Run``): scalars and texts with the reference's names and contexts, images as
    ``aim.Image``. System metrics and terminal capture are off (``log.txt`` is the terminal log)."""

    def __init__(self, repo, experiment, name, run_hash=None, tag="", hash_path=None):
        from aim import Run
        from aim.sdk.errors import MissingRunError

        opts = {"repo": repo, "system_tracking_interval": None, "capture_terminal_logs": False}
        start = time.time()
        while True:
            try:  # a resumed run: its Aim run, even if the killed process left its lock (YOCO's force_resume)
                self.run = Run(run_hash=run_hash, experiment=experiment, force_resume=run_hash is not None, **opts)
                break
            except MissingRunError:  # not in this repository (another --aim_repo): the rest becomes a new run
                run_hash = None
            except Exception as e:  # noqa: BLE001
                # another process creating the repository at the same moment (torchrun ranks), or the killed
                # run's tracker still closing the Aim run: try again for a while
                locked = run_hash is not None and "lock" in str(e).lower()
                if time.time() - start > (OPEN_WAIT if locked else NEW_REPO_WAIT):
                    raise
                time.sleep(0.2 + random.random() * 0.3)
        self.run.name = name
        if tag:
            self.run.add_tag(tag)
        if hash_path:  # the reference's run_hash.pt: a torch file holding the hash string
            from utils.files import atomic_save

            atomic_save(self.run.hash, hash_path)

    def hparams(self, values, text, step):
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

    def export(self, path, args_text, log_path):
        """The reference's ``aim_export``: ``created_at``, the arguments and the terminal log (our ``log.txt``)."""
        from utils.files import atomic_write_text

        try:
            with open(log_path) as f:
                lines = f.read()
        except OSError:
            lines = ""
        atomic_write_text(path, f"created_at: {self.run.created_at}\n{args_text}\n{lines}")

    def close(self):
        self.run.close()


def tb_tag(name, context):
    """TensorBoard tag of an Aim (name, context): ``name/value/value`` (``best acc/ipc10``, ``top1/model``)."""
    return "/".join([name] + [str(v) for v in (context or {}).values()])


class TensorBoardRun:
    """TensorBoard event file ``<folder>/events.out.tfevents.*``, written synchronously in the calling thread
    (no writer thread that could fail out of sight): scalars, texts, PNG images and the hyper-parameters
    (HPARAMS tab, and the run's ``args.yaml`` as the text ``args.yaml``). ``purge_step``: a resumed run's
    first re-done step; TensorBoard's readers drop the earlier files' events from that step on."""

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

    def hparams(self, values, text, step):
        from torch.utils.tensorboard.summary import hparams

        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
        for s in hparams(flat, {}):
            self._summary(s, step)
        self.text("args.yaml", text, step, None)

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

    def export(self, path, args_text, log_path):
        pass  # the reference's export belongs to Aim runs

    def close(self):
        self.file.close()




BACKENDS.update(aim=AimRun, tensorboard=TensorBoardRun)
