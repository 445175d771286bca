"""YOCO step 2: train one network on the decoded condensed set and log every sample's training output
(spec yoco §2).

    python get_training_dynamics.py -d cifar10 --condense_key idc --ipc 10
    python get_training_dynamics.py -d fashion --ipc 10 --custom-data-dir <folder or .pt> --epochs 300 --compact

Protocol (spec yoco §2.2–2.7): decoded set (factor 2 CIFAR / 3 ImageNet / 1 mtt·dsa·kip), ConvNet-3
(ResNetAP-10 for ImageNet), SGD 0.01 / 0.9 / 5e-4, batch 64 shuffled (last batch partial), MultiStepLR
×0.2 at 2T//3 and 5T//6 stepped every iteration (T = iterations/epoch × epochs), DSA
``color_crop_flip_scale_rotate`` per sample then CutMix (p 0.5); after every iteration the record
(epoch, iteration, idx, fp16 log-softmax of that training forward) is logged. Test every 10 epochs and at
the last. Output ``{base_dir}/ipc{IPC}/``: ``td-ipc{IPC}.pickle`` (reference layout; ``--compact`` also or
only writes the lossless compact ``td-ipc{IPC}.pt``; ``--compact stats`` writes instead only
``td-ipc{IPC}-stats.pt``, the per-sample statistics the scores need, ~13 B/sample/epoch, no pickle),
``ckpt-last.pt``, ``ckpt-best.pt`` (``{'model_state_dict', 'epoch'}``),
``log-train-ipc{IPC}.log``.

Restartable: every ``--save-every`` epochs the run state and the records since the previous save go to
``resume/`` (chunks, each written once); ``--resume`` continues from there. Logs and checkpoints are written
atomically; the dynamics log only when the run is complete.
Fixes (spec yoco §10): B1 single ``--reproduce_exp`` (default reproduce_3); B12 ``--epochs`` honoured.
"""
import argparse
import math
import os
import shutil
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.condensed import check_condensed, decode, load_condensed
from data.datasets import INFO, imagenet_folder, mean_std, test_tensors
from data.loaders import DeviceLoader, TensorLoader
from models import create_model
from utils.augment import DiffAug, Normalize, imagenet_test_transform, imagenet_train_transform
from utils.config import (UserError, atomic_save, cli, resolve_device, rng_state, save_config, set_rng_state, set_seed,
                          str2bool)
from utils.dynamics_io import DynamicsLog, save_compact, save_reference_pickle
from utils.dynamics_stats import save_stats
from utils.pruning import CONDENSE_KEYS, condensed_dir, default_factor, dynamics_base, ipc_from_folder, td_name
from utils.train import evaluate, train_one_epoch

DATASETS = ("cifar10", "cifar100", "imagenet", "fashion", "mnist", "svhn")
DSA_STRATEGY = "color_crop_flip_scale_rotate"  # spec yoco §2.5
STATE = "state.pt"


def get_args_parser():
    p = argparse.ArgumentParser(description="YOCO training dynamics on a decoded condensed set (spec yoco §2)")
    a = p.add_argument
    hide = argparse.SUPPRESS
    a("--epochs", type=int, default=1000, help="training epochs (honoured, B12)")
    a("--iterations", type=int, default=None, help="train at least this many iterations instead (whole epochs)")
    a("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    a("--lr", type=float, default=0.01)
    a("--network", choices=["convnet", "resnet10_ap"], default=None,
      help="default: convnet (ConvNet-3), resnet10_ap for ImageNet")
    a("-d", "--dataset", choices=DATASETS, default="cifar10")
    a("--condense_key", choices=CONDENSE_KEYS, default="idc")
    a("--iterations-per-testing", type=int, default=800, help=hide)  # unused by the reference
    a("--test-period", type=int, default=10, help="test every N epochs and after the last")
    a("--data-dir", "--data_dir", dest="data_dir", default="datasets", help="torchvision root of the test set")
    a("--download", action="store_true", help="let torchvision download a missing test set")
    a("--imagenet-dir", "--imagenet_dir", dest="imagenet_dir", default="datasets/imagenet")
    a("--base-dir", dest="base_dir", default=None,
      help="default raid/{reproduce_exp}/dynamics_and_scores/{condense_key}/{dataset}")
    a("--task-name", dest="task_name", default=None, help="sub-folder of --base-dir (default ipc{IPC})")
    a("--custom-data-dir", "--custom_data_dir", dest="custom_data_dir", default=None,
      help="condensed set (folder or .pt); default raid/condensed_img/... (spec yoco §1.1)")
    a("--score_file", default="", help=hide)  # no effect in the reference; must stay empty
    a("--gpuid", default="0", help=hide)  # unused by the reference; see --device
    a("--device", default="auto", help="auto, cpu or cuda")
    a("--ipc", type=int, default=None, help="IPC of the condensed set (default: from the folder name / data)")
    a("--factor", type=int, default=None, help="default 2 (CIFAR), 3 (ImageNet), 1 (mtt/dsa/kip)")
    for k in ("mtt", "dsa", "kip"):
        a(f"--load_{k}", action="store_true", help=hide)  # set from --condense_key in the reference
    a("--dsa", type=str2bool, default=True)
    a("--dsa_strategy", default=None, help=f"default {DSA_STRATEGY} (without flip for mnist/svhn)")
    a("--mixup", type=str2bool, default=True, help="CutMix with probability --mix_p")
    a("--mix_p", type=float, default=0.5)
    a("--beta", type=float, default=1.0)
    a("--random_selection", action="store_true", help=hide)
    a("--reproduce_exp", default="reproduce_3", help="which repetition: raid/{reproduce_exp}/... (B1 fixed)")
    a("--run_tag", default="")
    a("--seed", type=int, default=0, help="global seed (the reference is unseeded); -1 = unseeded")
    a("--compact", nargs="?", const="also", default=None, choices=["also", "only", "stats"],
      help="also (or only) write the lossless compact log td-ipc{IPC}.pt; stats: only the score statistics "
           "td-ipc{IPC}-stats.pt (smallest; cannot be turned back into the pickle)")
    a("--save-every", dest="save_every", type=int, default=50, help="resume checkpoint every N epochs (0: none)")
    a("--resume", action="store_true", help="continue an interrupted run from {out}/resume/")
    a("--stop-after-epochs", dest="stop_after", type=int, default=0,
      help="train at most N epochs in this invocation, save and exit (continue with --resume)")
    return p


# ------------------------------------------------------------------------------------------------
# settings


def data_settings(args):
    """Condense key, dataset shape, factor and network (spec yoco §2.1–2.2, §3.1); explicit flags win.
    Shared with generate_importance_score.py."""
    for k in ("mtt", "dsa", "kip"):
        if getattr(args, f"load_{k}"):
            if args.condense_key not in ("idc", k):
                raise UserError(f"--load_{k} contradicts --condense_key {args.condense_key}")
            args.condense_key = k
    d = args.dataset
    if d == "imagenet":
        args.nclass, args.nch, args.size = 10, 3, 224
        if args.condense_key != "idc":
            raise UserError(f"--condense_key {args.condense_key} has no ImageNet set (spec yoco §2.2: idc only)")
    else:
        args.nclass, args.nch, args.size = INFO[d]
    if args.factor is None:
        args.factor = default_factor(args.condense_key, d)
    if args.network is None:
        args.network = "resnet10_ap" if d == "imagenet" else "convnet"
    return args


def resolve_settings(args):
    """Derived settings that need no files (spec yoco §2.1–2.2); explicit flags win."""
    if args.score_file:
        raise UserError("--score_file has no use here: the dynamics are recorded on the full decoded set")
    if args.random_selection:
        raise UserError("--random_selection is not supported (the reference crashes with it); "
                        "the dynamics are recorded on the full decoded set")
    data_settings(args)
    d = args.dataset
    if args.dsa_strategy is None:
        args.dsa_strategy = DSA_STRATEGY.replace("_flip", "") if d in ("mnist", "svhn") else DSA_STRATEGY
    for name in ("epochs", "batch_size", "test_period"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if args.iterations is not None and args.iterations < 1:
        raise UserError("--iterations must be >= 1")
    return args


def resolve_paths(args):
    """Condensed-data folder, IPC and output folder (spec yoco §1.1, §2.2)."""
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


def load_decoded(args):
    """Decoded pixels [N, C, H, W] and labels (spec yoco §1.2–1.3); sets args.ipc, args.num_samples."""
    x, y = load_condensed(args.custom_data_dir, args.condense_key)
    per = check_condensed(x, y, args.nclass, args.nch, args.size, None, args.custom_data_dir)
    if args.ipc is not None and args.ipc != per:
        raise UserError(f"{args.custom_data_dir} holds {per} images per class but the IPC is {args.ipc}; "
                        f"pass --ipc {per}")
    args.ipc = per
    x, y = decode(x, y, args.factor, "single", args.nclass)
    args.num_samples = len(x)
    return x, y


# ------------------------------------------------------------------------------------------------
# training


class DynamicsTrainer:
    """Model, optimiser, per-iteration schedule, augmentation and the logging loader (spec yoco §2.3–2.6)."""

    def __init__(self, args, x, y, device):
        self.args, self.device = args, device
        if args.dataset == "imagenet":  # per-sample RRC/flip/jitter/lighting + Normalize (spec yoco §1.2)
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
        T = len(self.loader) * args.epochs  # spec yoco §2.4: milestones in iterations
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=[2 * T // 3, 5 * T // 6], gamma=0.2)
        self.aug = DiffAug(args.dsa_strategy, batch=False) if args.dsa else None

    def epoch(self, e, log):
        """One epoch; appends one record per iteration to ``log``. Returns (train top-1, loss)."""
        def record(it, idx, out):
            log.append(e, it, idx, F.log_softmax(out.float(), dim=1))

        top1, _, loss = train_one_epoch(self.model, self.loader, self.opt, aug=self.aug,
                                        mixup="cut" if self.args.mixup else "vanilla", mix_p=self.args.mix_p,
                                        beta=self.args.beta, scheduler=self.sched, on_batch=record)
        return top1, loss

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}

    def load_state_dict(self, st):
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])


def test_loader(args, device):
    """Real test set: batch 512 (32 px) / 32 (ImageNet) (spec yoco §2.7)."""
    if args.dataset == "imagenet":
        ds = imagenet_folder(args.imagenet_dir, "val", args.nclass, transform=imagenet_test_transform(args.size))
        dl = torch.utils.data.DataLoader(ds, batch_size=32)
        return [(bx.to(device), by.to(device)) for bx, by in dl] if len(ds) <= 2000 else DeviceLoader(dl, device)
    tx, ty = test_tensors(args)
    return TensorLoader(tx, ty, 512, False, device)


# ------------------------------------------------------------------------------------------------
# files


class TextLog:
    """stdout tee into ``log-train-ipc{IPC}.log`` (spec yoco §2.7)."""

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


def load_chunk(path):
    c = torch.load(path, map_location="cpu", weights_only=True)
    out, s = [], 0
    for e, it, b in c["meta"].tolist():
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
    # own resume state: holds python/numpy RNG states (pickled objects), so it is read with weights_only=False
    atomic_save({"epoch_done": epoch_done, "trainer": trainer.state_dict(), "rng": rng_state(), "best": best,
                 "chunks": list(chunks), "signature": run_signature(trainer.args)}, os.path.join(resume_dir, STATE))


def load_state(resume_dir, trainer):
    path = os.path.join(resume_dir, STATE)
    if not os.path.isfile(path):
        raise UserError(f"--resume: no interrupted run in {resume_dir}; run without --resume")
    st = torch.load(path, map_location="cpu", weights_only=False)  # our own file, see save_state
    want = run_signature(trainer.args)
    diff = [k for k in want if st["signature"].get(k) != want[k]]
    if diff:
        raise UserError(f"--resume: the interrupted run used other settings ({', '.join(diff)}); "
                        "repeat its command line or start over without --resume")
    trainer.load_state_dict(st["trainer"])
    set_rng_state(st["rng"])
    return st["epoch_done"], st["best"], list(st["chunks"])


def write_outputs(args, out_dir, model, records, resume_dir, chunks, log_msg, targets):
    """Final files (spec yoco §2.7), each atomic; the resume folder goes last. ``targets``: decoded labels
    (for ``--compact stats``)."""
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


def main(args):
    resolve_settings(args)
    resolve_paths(args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    x, y = load_decoded(args)
    task = args.task_name or f"ipc{args.ipc}"
    out_dir = os.path.join(args.base_dir, task)
    resume_dir = os.path.join(out_dir, "resume")
    if args.resume and not os.path.isfile(os.path.join(resume_dir, STATE)):
        raise UserError(f"--resume: no interrupted run in {resume_dir}; run without --resume")
    os.makedirs(out_dir, exist_ok=True)
    trainer = DynamicsTrainer(args, x, y, device)
    test = test_loader(args, device)
    log, chunks, start, best = DynamicsLog(), [], 0, {"acc": -1.0, "epoch": -1}
    if args.resume:
        start, best, chunks = load_state(resume_dir, trainer)
    elif os.path.isdir(resume_dir):
        shutil.rmtree(resume_dir)  # a fresh run replaces an interrupted one
    msg = TextLog(os.path.join(out_dir, f"log-train-ipc{args.ipc}.log"), fresh=not args.resume)
    if not args.resume:
        save_config(args, os.path.join(out_dir, "args.yaml"))
    msg(f"{args.condense_key}/{args.dataset} IPC {args.ipc} f {args.factor}: {args.num_samples} decoded images, "
        f"{args.network}, {args.epochs} epochs x {len(trainer.loader)} iterations on {device}; "
        f"{'resuming at epoch ' + str(start) if start else 'data ' + args.custom_data_dir}")
    stop = args.epochs if args.stop_after <= 0 else min(args.epochs, start + args.stop_after)
    bar = tqdm(range(start, stop), initial=start, total=args.epochs, desc="dynamics", dynamic_ncols=True)
    t0 = time.time()
    for e in bar:
        top1, loss = trainer.epoch(e, log)
        if not math.isfinite(loss):
            raise UserError(f"non-finite training loss at epoch {e}; lower --lr")
        lr = trainer.opt.param_groups[0]["lr"]
        if e % args.test_period == 0 or e == args.epochs - 1:  # spec yoco §2.7: epochs 0, 10, ... and last
            acc = evaluate(trainer.model, test)[0]
            if acc > best["acc"]:
                best = {"acc": acc, "epoch": e}
                atomic_save({"model_state_dict": trainer.model.state_dict(), "epoch": e},
                            os.path.join(out_dir, "ckpt-best.pt"))
            msg(f"epoch {e}: train top-1 {top1:.2f} loss {loss:.4f} lr {lr:.5f} | test {acc:.2f} "
                f"(best {best['acc']:.2f} @ {best['epoch']})")
        bar.set_postfix(train=f"{top1:.1f}", loss=f"{loss:.3f}", best=f"{best['acc']:.2f}")
        done = e + 1
        if done < args.epochs and (done == stop or (args.save_every > 0 and done % args.save_every == 0)):
            os.makedirs(resume_dir, exist_ok=True)
            save_state(resume_dir, trainer, log, chunks, done, best)
    bar.close()
    if stop < args.epochs:
        msg(f"stopped after epoch {stop - 1} ({time.time() - t0:.0f}s); continue with the same command and --resume")
        return {"out_dir": out_dir, "epochs_done": stop, "complete": False}
    write_outputs(args, out_dir, trainer.model, log.records, resume_dir, chunks, msg, y)
    msg(f"done in {time.time() - t0:.0f}s: best test {best['acc']:.2f} at epoch {best['epoch']}; files in {out_dir}")
    return {"out_dir": out_dir, "epochs_done": args.epochs, "complete": True, "best": best}


if __name__ == "__main__":
    cli(main, get_args_parser)
