"""``--precision fp32|tf32|bf16`` (issue 12): the arithmetic of every network forward and backward of
condensation, evaluation and YOCO's training dynamics.

* ``fp32`` (default, the faithful path): PyTorch's defaults, as the reference ran. Note that on CUDA those
  let cuDNN convolutions use TF32 on Ampere and newer GPUs (``torch.backends.cudnn.allow_tf32`` is True by
  default) while matrix products stay float32; we leave that as the reference had it.
* ``tf32`` (CUDA only): TF32 for matrix products and convolutions (``allow_tf32`` on both back-ends).
* ``bf16``: autocast to bfloat16 (``torch.autocast``) around the forward passes and the losses built from
  them; parameters, images, optimiser states and the matching-loss reductions stay float32. Fast on CPUs
  with AVX512-BF16 / AMX and on GPUs with bfloat16 tensor cores; it changes the numbers (docs/benchmarks.md
  gives the speed and the accuracy effect measured on this project's machines).
"""
import contextlib

import torch

from utils.errors import UserError

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision, device):
    """UserError for a precision the device cannot run; sets the TF32 switches for ``tf32``."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise UserError(f"unknown --precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "tf32":
        if device.type != "cuda":
            raise UserError("--precision tf32 needs a CUDA device (TF32 is a GPU tensor-core format); "
                            "use fp32 or bf16 on the CPU")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bfloat16 support; use fp32 (or tf32)")


def amp_for(precision, device):
    """``check_precision``, then the context factory of the network passes (``amp()`` → ``autocast``), as the
    training loops take it (``training.epochs.train_one_epoch(amp=…)``)."""
    check_precision(precision, device)
    return lambda: autocast(precision, device)


def autocast(precision, device):
    """The context of a forward pass under ``precision``: ``torch.autocast`` to bfloat16 for ``bf16``,
    nothing otherwise."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
