"""YOCO's training-dynamics run (reference he-y/you-only-condense-once/get_training_dynamics.py;
docs/algorithms.md#the-dynamics-run): settings, the trainer that logs every sample's output,
the real test set, and the files of a restartable run. ``get_training_dynamics.py`` drives it;
``generate_importance_score.py`` shares the settings and the decoded set.

Protocol (YOCO reference get_training_dynamics.py; docs/algorithms.md#the-dynamics-run): decoded set (factor 2 CIFAR / 3
ImageNet / 1 mtt·dsa·kip), ConvNet-3
(ResNetAP-10 for ImageNet), SGD 0.01 / 0.9 / 5e-4, batch 64 shuffled (last batch partial), MultiStepLR
×0.2 at 2T//3 and 5T//6 stepped every iteration (T = iterations/epoch × epochs), DSA
``color_crop_flip_scale_rotate`` per sample then CutMix (p 0.5); after every iteration the record
(epoch, iteration, idx, fp16 log-softmax of that training forward) is logged.
"""
import math
import os
import re
import shutil
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.condensed import load_decoded
from data.datasets import INFO, mean_std
from data.loaders import TensorLoader
from data.loaders import test_loader as real_test_loader
from models import create_model
from cli.arguments import check_aug_strategy
from training.augment import DiffAug, Normalize, imagenet_train_transform
from utils.config import pack_rng, rng_state, set_rng_state, unpack_rng
from utils.errors import UserError
from utils.fields import Fields
from utils.files import atomic_save, load_torch, nonfinite
from training.precision import amp_for
from training.epochs import train_one_epoch
from cli.yoco_options import DSA_STRATEGY, reproduce_seed
from yoco.dynamics_io import array_field, save_compact, save_reference_pickle
from yoco.dynamics_stats import save_stats
from yoco.pruning import condensed_dir, default_factor, dynamics_base, ipc_from_folder, td_name

STATE = "state.pt"


def data_settings(args):
    """Condense key, dataset shape, factor and network (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run, #el2n-and-lbpe); explicit flags win.
    Shared with generate_importance_score.py."""
    for k in ("mtt", "dsa", "kip"):
        if getattr(args, f"load_{k}"):
            if args.condense_key not in ("idc", k):
                raise UserError(f"--load_{k} and --condense_key {args.condense_key} contradict each other; pass "
                                f"--condense_key {k} alone")
            args.condense_key = k
    d = args.dataset
    if d == "imagenet":
        args.nclass, args.nch, args.size = 10, 3, 224
        if args.condense_key != "idc":
            raise UserError(f"--condense_key {args.condense_key} has no ImageNet set (only idc has one: docs/algorithms.md#yoco-condensed-inputs)")
    else:
        args.nclass, args.nch, args.size = INFO[d]
    if args.factor is None:
        args.factor = default_factor(args.condense_key, d)
    if args.network is None:
        args.network = "resnet10_ap" if d == "imagenet" else "convnet"
    return args


def resolve_settings(args):
    """Derived settings that need no files (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run); explicit flags win."""
    if args.score_file:
        raise UserError("--score_file has no use here: the dynamics are recorded on the full decoded set")
    if args.random_selection:
        raise UserError("--random_selection is not supported (the reference crashes with it); "
                        "the dynamics are recorded on the full decoded set")
    data_settings(args)
    if args.seed is None:  # each repetition its own seed (the runs the authors average are independent)
        args.seed = reproduce_seed(args.reproduce_exp)
    d = args.dataset
    if args.dsa_strategy is None:
        args.dsa_strategy = DSA_STRATEGY.replace("_flip", "") if d in ("mnist", "svhn") else DSA_STRATEGY
    check_aug_strategy(args.dsa_strategy, "--dsa_strategy")
    return args


def resolve_paths(args):
    """Condensed-data folder, IPC and output folder (YOCO reference argument.py; get_training_dynamics.py; docs/yoco.md;
    docs/algorithms.md#the-dynamics-run)."""
    if args.custom_data_dir is None:
        if args.ipc is None:
            raise UserError("pass --ipc N (or --custom-data-dir <condensed folder>)")
        args.custom_data_dir = condensed_dir(args.condense_key, args.dataset, args.ipc, args.nclass)
    if not os.path.exists(args.custom_data_dir):
        raise UserError(f"condensed set {args.custom_data_dir!r} not found; pass --custom-data-dir")
    if args.ipc is None:
        args.ipc = ipc_from_folder(args.custom_data_dir)  # None: taken from the data below
    if args.base_dir is None:
        args.base_dir = dynamics_base(args.reproduce_exp, args.condense_key, args.dataset, args.nclass)
    return args


def load_condensed_set(args):
    """Decoded pixels [N, C, H, W] and labels (YOCO reference utils/img_loader.py, load_data_path and decode;
    docs/algorithms.md#yoco-condensed-inputs) through ``data.condensed.load_decoded``;
    sets args.ipc (from the data when not given) and args.num_samples."""
    x, y, args.ipc = load_decoded(args.custom_data_dir, args.nclass, args.nch, args.size, args.factor,
                                  condense_key=args.condense_key, ipc=args.ipc, set_flag="--custom-data-dir")
    args.num_samples = len(x)
    return x, y


# ------------------------------------------------------------------------------------------------
# training


class DynamicsTrainer:
    """Model, optimiser, per-iteration schedule, augmentation and the logging loader (YOCO reference
    get_training_dynamics.py; ccs/core/training/Trainer.py; docs/algorithms.md#the-dynamics-run)."""

    def __init__(self, args, x, y, device):
        self.args, self.device = args, device
        if args.dataset == "imagenet":  # per-sample RRC/flip/jitter/lighting + Normalize (YOCO reference
        # utils/img_loader.py, load_data_path; docs/algorithms.md#yoco-condensed-inputs)
            tf = imagenet_train_transform(args.size, rrc=True, from_tensor=True)
            self.loader = TensorLoader(x, y, args.batch_size, True, device, sample_transform=tf, return_index=True)
        else:
            norm = Normalize(*mean_std(args.dataset)).to(device)
            self.loader = TensorLoader(x, y, args.batch_size, True, device, transform=norm, return_index=True)
        if args.iterations is not None:
            args.epochs = math.ceil(args.iterations / len(self.loader))
        self.model = create_model(args.network, nclass=args.nclass, nch=args.nch, size=args.size, depth=3,
                                  norm_type="instance", dataset=args.dataset).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), args.lr, momentum=0.9, weight_decay=5e-4)
        T = len(self.loader) * args.epochs  # YOCO reference get_training_dynamics.py;
        # docs/algorithms.md#the-dynamics-run: milestones in iterations
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=[2 * T // 3, 5 * T // 6], gamma=0.2)
        self.aug = DiffAug(args.dsa_strategy, batch=False) if args.dsa else None
        self.amp = amp_for(getattr(args, "precision", "fp32"), device)  # training/precision.py

    def epoch(self, e, log):
        """One epoch; appends one record per iteration to ``log``. Returns (train top-1, loss)."""
        def record(it, idx, out):
            log.append(e, it, idx, F.log_softmax(out.float(), dim=1))

        top1, _, loss = train_one_epoch(self.model, self.loader, self.opt, aug=self.aug,
                                        mixup="cut" if self.args.mixup else "vanilla", mix_p=self.args.mix_p,
                                        beta=self.args.beta, scheduler=self.sched, on_batch=record, amp=self.amp)
        log.settle()
        return top1, loss

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}

    def load_state_dict(self, st):
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])


def test_loader(args, device):
    """Real test set: batch 512 (32 px) / 32 (ImageNet, kept decoded up to 2000 images) (YOCO reference
    get_training_dynamics.py; docs/algorithms.md#the-dynamics-run)."""
    return real_test_loader(args, device, 32 if args.dataset == "imagenet" else 512, preload_max=2000)


# ------------------------------------------------------------------------------------------------
# files


class TextLog:
    """stdout tee into ``log-train-ipc{IPC}.log`` (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run)."""

    def __init__(self, path, fresh):
        self.path = path
        if fresh and os.path.exists(path):
            os.remove(path)

    def __call__(self, msg):
        tqdm.write(msg)
        with open(self.path, "a") as f:
            f.write(time.strftime("[%Y-%m-%d %H:%M:%S] ") + msg + "\n")


def save_chunk(path, records):
    """Records of some epochs as plain tensors (``weights_only`` loadable), written once, atomically."""
    atomic_save({"meta": torch.tensor([[r["epoch"], r["iteration"], r["idx"].numel()] for r in records],
                                      dtype=torch.int64),
                 "idx": torch.cat([r["idx"] for r in records]),
                 "output": torch.cat([r["output"] for r in records])}, path)


RESUME_FIX = "start over without --resume"


def load_chunk(path):
    """The records of a chunk (``save_chunk``), every field checked: ``meta`` int [R, 3] (epoch, iteration, batch
    size, all >= 0), ``idx`` int [sum of the sizes] >= 0, ``output`` float [same, C] without NaN/+Inf."""
    c = load_torch(path, "dynamics chunk of an interrupted run", RESUME_FIX)
    rec = Fields(c, path, RESUME_FIX)
    meta = array_field(rec, "meta", ("int",), shape=(None, 3), lo=0)
    total = int(meta[:, 2].sum())
    idx = array_field(rec, "idx", ("int",), shape=(total,), lo=0)
    output = array_field(rec, "output", ("float",), shape=(total, None), neg_inf=True)
    c = {"idx": idx, "output": output}
    out, s = [], 0
    for e, it, b in meta.tolist():
        out.append({"epoch": e, "iteration": it, "idx": c["idx"][s:s + b].clone(),
                    "output": c["output"][s:s + b].clone()})
        s += b
    return out


def run_signature(args):
    """What must not change between an interrupted run and its --resume."""
    keys = ("dataset", "condense_key", "custom_data_dir", "ipc", "factor", "network", "epochs", "batch_size",
            "lr", "dsa", "dsa_strategy", "mixup", "mix_p", "beta", "seed", "num_samples")
    return {k: getattr(args, k) for k in keys}


def save_state(resume_dir, trainer, log, chunks, epoch_done, best):
    name = f"chunk-{len(chunks):04d}.pt"
    if len(log):
        save_chunk(os.path.join(resume_dir, name), log.records)
        chunks.append(name)
        log.records.clear()
    # tensors and plain values only (the numpy RNG key packed as a tensor): read back with weights_only=True
    atomic_save({"epoch_done": epoch_done, "trainer": trainer.state_dict(), "rng": pack_rng(rng_state(trainer.device)),
                 "best": best, "chunks": list(chunks), "signature": run_signature(trainer.args)}, os.path.join(resume_dir, STATE))


def load_state(resume_dir, trainer):
    path = os.path.join(resume_dir, STATE)
    if not os.path.isfile(path):
        raise UserError(f"--resume: no interrupted run in {resume_dir}; run without --resume")
    st = load_torch(path, "resume state", RESUME_FIX)
    rec = Fields(st, path, RESUME_FIX)
    if not (rec.has("signature") and rec.has("trainer")):
        raise UserError(f"--resume: {path} is not a dynamics resume state; {RESUME_FIX}")
    sig = rec.get("signature", dict)
    part = rec.sub("trainer")
    for key in ("model", "optimizer", "scheduler"):
        part.get(key, dict)
    rec.get("rng", dict)
    best = rec.sub("best")
    best.get("acc", float, finite=True, lo=-1, hi=100)
    best.get("epoch", int, lo=-1)
    for i, name in enumerate(rec.items("chunks", str)):
        if not re.fullmatch(r"chunk-\d{4}\.pt", name) or not os.path.isfile(os.path.join(resume_dir, name)):
            rec.fail(f"is {name!r}, not a chunk-NNNN.pt file of {resume_dir}", ("chunks", i))
    bad = nonfinite(st["trainer"])
    if bad:
        raise UserError(f"--resume: the resume state {path} holds NaN/Inf values ({', '.join(bad[:3])}); "
                        "start over without --resume (with a lower --lr)")
    want = run_signature(trainer.args)
    diff = [k for k in want if sig.get(k) != want[k]]
    if diff:
        raise UserError(f"--resume: the interrupted run used other settings ({', '.join(diff)}); "
                        "repeat its command line or start over without --resume")
    rec.get("epoch_done", int, lo=1, hi=max(1, int(trainer.args.epochs)))
    trainer.load_state_dict(st["trainer"])
    set_rng_state(unpack_rng(st["rng"]), trainer.device)
    return st["epoch_done"], st["best"], list(st["chunks"])


def write_outputs(args, out_dir, model, records, resume_dir, chunks, log_msg, targets):
    """Final files (YOCO reference get_training_dynamics.py; docs/algorithms.md#the-dynamics-run), each atomic; the
    resume folder goes last. ``targets``: decoded labels (for ``--compact stats``)."""
    all_records = [r for name in chunks for r in load_chunk(os.path.join(resume_dir, name))] + records
    atomic_save({"model_state_dict": model.state_dict(), "epoch": args.epochs - 1}, os.path.join(out_dir, "ckpt-last.pt"))
    written = []
    if args.compact not in ("only", "stats"):
        written.append(os.path.join(out_dir, td_name(args.ipc)))
        save_reference_pickle(written[-1], args.dataset, all_records)
    if args.compact in ("also", "only"):
        written.append(os.path.join(out_dir, td_name(args.ipc, "compact")))
        save_compact(written[-1], args.dataset, all_records, num_samples=args.num_samples)
    if args.compact == "stats":
        written.append(os.path.join(out_dir, td_name(args.ipc, "stats")))
        save_stats(written[-1], args.dataset, all_records, targets, num_samples=args.num_samples)
    shutil.rmtree(resume_dir, ignore_errors=True)
    for w in written:
        log_msg(f"training dynamics ({len(all_records)} records) -> {w} ({os.path.getsize(w) / 2**20:.1f} MiB)")


# ------------------------------------------------------------------------------------------------
# the trained network, for the score generator (YOCO reference generate_importance_score.py; docs/algorithms.md#scores:
# entropy/loss and the SSP k-means features)


@torch.no_grad()
def clean_pass(model, x, dataset, batch_size, device):
    """Logits and ``embed`` features of ckpt-last in eval mode on the normalised decoded images."""
    norm = Normalize(*mean_std(dataset)).to(device)
    model.eval()
    logits, feats = [], []
    for s in range(0, len(x), batch_size):
        xb = norm(x[s:s + batch_size].to(device))
        feats.append(model.embed(xb).flatten(1).float())
        logits.append(model(xb).float().cpu())
    return torch.cat(logits), torch.cat(feats)


def load_dynamics_model(args, path, device):
    """The network of a dynamics run (``ckpt-last.pt``) for the clean passes of the score generator."""
    fix = "run get_training_dynamics.py first (or pass --ckpt)"
    st = load_torch(path, "model checkpoint", fix)
    rec = Fields(st, path, fix)
    if not rec.has("model_state_dict"):
        raise UserError(f"{path} is not a dynamics checkpoint ({{'model_state_dict', 'epoch'}}); {fix}")
    weights = rec.get("model_state_dict", dict, nonempty=True)
    rec.get("epoch", int, lo=0, default=None)
    for k, v in weights.items():
        if not torch.is_tensor(v):
            rec.sub("model_state_dict").fail(f"is {type(v).__name__}, expected a tensor", k)
    bad = nonfinite(weights)
    if bad:
        raise UserError(f"{path}: field 'model_state_dict.{bad[0]}' holds NaN/Inf values ({len(bad)} tensors): the "
                        "dynamics run diverged; pass another --ckpt, or re-run get_training_dynamics.py with a lower "
                        "--lr")
    model = create_model(args.network, nclass=args.nclass, nch=args.nch, size=args.size, depth=3,
                         norm_type="instance", dataset=args.dataset)
    try:
        model.load_state_dict(st["model_state_dict"])
    except RuntimeError as e:
        raise UserError(f"{path} does not fit a {args.network} for {args.dataset}: {str(e).splitlines()[0]}")
    return model.to(device)
