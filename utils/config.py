"""Run plumbing shared by every script: errors, device, seeds, RNG state, logging (files: ``utils.files``).

Nothing of the project is imported here: every other module may use this one.
"""
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch

from utils.errors import UserError


def tune_allocator(mmap_threshold=64 << 20, trim_threshold=256 << 20):
    """Bound what glibc's allocator keeps (``mallopt``); no effect elsewhere. Returns True when applied.

    glibc's default serves every block of 128 KiB or more with its own mmap (a threshold it raises by
    itself, but never above 32 MiB) and unmaps it on free, so every training step page-faults its
    activation buffers in again: a batch-64 activation of ConvNet-3 on 32 px is 32 MiB + a header, above
    that ceiling; on the 2-core CPU that was a third of the wall time of an evaluation epoch
    (benchmarks/eval_epoch.py: 0.99 s → 0.56 s). Settings:

    * ``M_MMAP_THRESHOLD`` = ``mmap_threshold`` (64 MiB): blocks below come from the heap and are reused
      step after step without a page fault (an evaluation epoch: ~0 minor faults instead of ~260 000,
      and a validation pass in batches of 100: ~0 instead of ~2.5 million); larger ones are mmapped
      and given back on free.
    * ``M_TRIM_THRESHOLD`` = ``trim_threshold`` (256 MiB): a free heap top larger than this is given back.
      It must exceed what one training step frees at the top of the heap, or every step trims and faults
      again (128 MiB: ~73 000 faults per evaluation epoch; 256 MiB: ~0).

    The setting before issue 12 (1 GiB and 2^31 - 1) never gave anything back: after a validation in
    batches of 500 the process kept its ~570 MB of activations besides the training's, and the peak
    resident memory of the 400-image evaluation benchmark was ~1.7 GB (benchmarks/eval_memory.py).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, int(mmap_threshold))
                    and libc.mallopt(m_trim_threshold, int(trim_threshold)))
    except (OSError, AttributeError):
        return False


def registrar(table, kind):
    """A ``@register(name)`` decorator filling ``table`` (models, score families); a name twice is an error."""
    def register(name):
        def deco(fn):
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = fn
            return fn
        return deco
    return register


def resolve_device(name="auto"):
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is visible; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"unknown --device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def set_seed(seed, deterministic=False):
    """Seed python, numpy and torch (all devices). ``deterministic`` also makes the kernels deterministic
    (``set_determinism``)."""
    if seed is not None and seed >= 0:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
    set_determinism(deterministic)


def set_determinism(deterministic):
    """The kernel settings of a run, set explicitly (docs/determinism.md).

    ``deterministic=False`` (default, as the reference): cuDNN autotuning on CUDA, TF32 for cuDNN
    convolutions and fp32 for matrix products -- the defaults of the PyTorch the reference ran on, so the
    reference's numbers. ``deterministic=True``: strict ``torch.use_deterministic_algorithms(True)`` (an
    operation without a deterministic kernel raises instead of warning; the three we differentiate
    through have deterministic stand-ins, training/determinism.py), no autotuning, and no TF32 anywhere, so
    a CUDA run repeats bit for bit on the same GPU, driver and PyTorch. CPU runs are deterministic in
    either mode."""
    torch.backends.cudnn.allow_tf32 = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic and torch.cuda.is_available()  # the reference's condense_reg.py,
    # __main__ (he-y/Multisize-Dataset-Condensation)
    torch.use_deterministic_algorithms(bool(deterministic))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def rng_state(device=None):
    """The global RNG states a run uses, as a torch-saveable dict (resume): python, numpy, torch's CPU
    generator and, for a CUDA run, the generator of that run's GPU only (a CPU run never touches CUDA;
    a resume may see other GPUs than the run that saved)."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and torch.device(device).type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st, device=None):
    """Restore ``rng_state``; the states are CPU tensors (checkpoints load to CPU). A CUDA state is restored
    into the run's GPU when the run is on CUDA, and ignored otherwise (a CPU resume of a GPU run)."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"].cpu())
    if "cuda" in st and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(st["cuda"].cpu(), device)


def pack_rng(st):
    """``rng_state()`` with the numpy key array as a tensor, so that a resume file holding it loads with
    ``torch.load(weights_only=True)``; ``unpack_rng`` turns it back."""
    st = dict(st)
    name, keys, pos, has_gauss, cached = st["numpy"]
    st["numpy"] = (name, torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss),
                   float(cached))
    return st


def unpack_rng(st):
    st = dict(st)
    name, keys, pos, has_gauss, cached = st["numpy"]
    st["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    return st


def jsonable(v, strict=False):
    """``v`` as plain JSON/YAML values: containers, str, int, float, bool, None; a numpy or torch scalar as its
    number, anything else as its text. ``strict`` (JSON files, ``to_json``): NaN and ±Inf become None."""
    if isinstance(v, float) and strict and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x, strict) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x, strict) for k, x in v.items()}
    if isinstance(v, np.generic) or (torch.is_tensor(v) and v.dim() == 0):
        return jsonable(v.item(), strict)
    return str(v)


def to_json(obj, **kw):
    """The one way a JSON file of this project is written (records, partial files, ``metrics.jsonl``): strict
    JSON (RFC 8259), which has no NaN or Infinity. A non-finite number becomes null -- the last line of
    defence: a diverged training stops with ``StopTraining`` before it could produce one (docs/failures.md)."""
    return json.dumps(jsonable(obj, strict=True), allow_nan=False, **kw)


class Logger:
    """Prints and appends to ``<folder>/log.txt`` (MDC reference misc/utils.py, Logger)."""

    def __init__(self, folder=None, quiet=False):
        self.path = os.path.join(folder, "log.txt") if folder else None
        self.quiet = quiet

    def __call__(self, *msg):
        line = " ".join(str(m) for m in msg)
        if not self.quiet:
            from tqdm import tqdm

            tqdm.write(line)
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(time.strftime("[%H:%M:%S] ") + line + "\n")
            except OSError as e:  # e.g. a full disk: one line, not a traceback from a log call
                raise UserError(f"cannot append to the run log {self.path} ({e.strerror}); free space or fix the "
                                "folder's permissions and re-run") from None
