"""Evaluate a condensed set: train fresh networks on it and report test accuracy (spec mdc §11, yoco §6).

    python test.py -d cifar10 -f 2 --ipc 10 --test_type cx_cy --ipcy 5 --test_data_dir <run dir> --repeat 3
    python test.py -d fashion -s random --ipc 10 -f 1 --repeat 3

Test types: ``other`` (the whole set), ``cx_cy`` (the IPC-y prefix of an IPC-N set: the first y·f²
decoded images per class; Baseline C and MDC rows), ``baseline_b`` (N separate IPC-1 runs). Sources
(``-s``): a condensed folder or ``.pt`` (idc, dream; ``idc_cat`` merges class-partitioned runs),
``random`` (the first ipc real images per class), and pre-normalised dc/dsa/kip/mtt tensors.
Every evaluation is appended to a JSON record (``--results_file``); ``--save_subset`` exports the
exact (decoded) training set that was evaluated.
"""
import argparse
import json
import os
import platform
import time

import torch

from data.condensed import (check_condensed, class_prefix, decode, decode_zoom, load_condensed,
                            save_condensed)
from data.datasets import (first_per_class, imagenet_folder, imagenet_tensors, load_tensors, mean_std,
                           test_tensors)
from data.loaders import DeviceLoader, TensorLoader
from models import create_model, define_model
from utils.arguments import add_reference_args, ipc_epoch
from utils.augment import Normalize, imagenet_test_transform, imagenet_train_transform
from utils.config import UserError, atomic_write_text, cli, jsonable, resolve_device, set_seed
from utils.train import summarize, train_protocol

TEST_TYPES = ("other", "cx_cy", "baseline_b")
PRE_NORMALISED = ("dc", "dsa", "kip", "mtt")  # MDC's -s loaders: stored normalised, no Normalize


def get_args_parser():
    p = argparse.ArgumentParser(description="Evaluate a condensed set (MDC / YOCO test.py)")
    return add_reference_args(p)


# ------------------------------------------------------------------------------------------------
# the training set


def file_format(args):
    """YOCO's --condense_key, else MDC's -s (dsa/kip/mtt files have their own layouts)."""
    if args.condense_key != "idc":
        return args.condense_key
    return args.slct_type if args.slct_type in ("dsa", "kip", "mtt") else "idc"


def _load_checked(args, path, per_class=None):
    x, y = load_condensed(path, file_format(args), args.niter)
    check_condensed(x, y, args.nclass, args.nch, args.size, per_class, path)
    return x, y


def _source_path(args):
    if args.test_data_dir:
        return args.test_data_dir
    if args.custom_data_dir:
        return args.custom_data_dir
    if args.slct_ipc > 0:  # YOCO: the condensed set of --condense_key (spec yoco §1.1)
        from utils.pruning import condensed_dir

        if args.ipc <= 0:
            raise UserError("--slct_ipc needs --ipc IPC_F (or --test_data_dir <condensed set>)")
        return condensed_dir(args.condense_key, args.dataset, args.ipc, args.nclass)
    raise UserError("no condensed set given; pass --test_data_dir <folder or .pt> (or -s random)")


def _merge_partitions(args, base):
    """``-s idc_cat``: concatenate class-partitioned runs ``{base}_{k}_phase{i}`` (spec mdc §10)."""
    if args.nclass_sub <= 0 or args.nclass % args.nclass_sub:
        raise UserError(f"-s idc_cat needs --nclass_sub dividing --nclass {args.nclass}")
    xs, ys = [], []
    for i in range(args.nclass // args.nclass_sub):
        x, y = load_condensed(f"{base}_{args.nclass_sub}_phase{i}", "idc", args.niter)
        xs.append(x)
        ys.append(y)
    x, y = torch.cat(xs), torch.cat(ys)
    check_condensed(x, y, args.nclass, args.nch, args.size, None, base)
    return x, y


def _baseline_b(args, base):
    """N IPC-1 runs ``base``, ``base_idx_1`` … concatenated; the first y runs (spec mdc §11.5)."""
    xs, ys = [], []
    for k in range(args.ipcy):
        folder = base if k == 0 else f"{base}_idx_{k}"
        if not os.path.exists(folder):
            raise UserError(f"baseline_b needs the --start_idx {k} run at {folder}")
        x, y = load_condensed(folder, "idc", args.niter)
        check_condensed(x, y, args.nclass, args.nch, args.size, 1, folder)
        d, dy = decode_zoom(x, y, args.factor)  # per run: labels stay aligned
        xs.append(d)
        ys.append(dy)
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.sort(y, stable=True).indices  # class-major like every other set we export
    return x[order], y[order]


def build_train_set(args):
    """The (decoded) training images in [0, 1] (or pre-normalised), labels, and where they came from."""
    if args.slct_type == "random":  # real-data subset baseline: first ipc images per class
        if args.ipc <= 0:
            raise UserError("-s random needs --ipc > 0")
        if args.dataset == "imagenet":
            ds = imagenet_folder(args.imagenet_dir, "train", args.nclass, args.phase, args.dseed, ipc=args.ipc)
            x, y = imagenet_tensors(ds, args.size)
            return x.float() / 255, y, f"{args.imagenet_dir}/train (first {args.ipc} per class)"
        x, y = load_tensors(args.dataset, args.data_dir, train=True, download=args.download)
        x, y = first_per_class(x, y, args.nclass, args.ipc)
        return x.float() / 255, y, f"{args.dataset} train (first {args.ipc} per class)"
    base = _source_path(args)
    if args.test_type == "baseline_b":
        return (*_baseline_b(args, base), base)
    if args.slct_type == "idc_cat":
        x, y = _merge_partitions(args, base)
    else:
        pinned = args.ipc > 0 and (args.test_type == "cx_cy" or "ipc" in args.explicit)
        x, y = _load_checked(args, base, args.ipc if pinned else None)
    per = len(x) // args.nclass
    # test.py honours only the multi decode; bound falls back to single (spec mdc §11.3)
    dtype = "multi" if args.decode_type == "multi" else "single"
    x, y = decode(x, y, args.factor, dtype, args.nclass)
    if args.test_type == "cx_cy":
        n_per = len(x) // args.nclass
        keep = n_per * args.ipcy // per  # = ipcy·f² for single decoding
        x, y = class_prefix(x, y, args.nclass, n_per, keep)
    if args.slct_ipc > 0:
        from utils.pruning import prune_decoded  # YOCO selection (spec yoco §4-§5)

        x, y = prune_decoded(args, x, y)
    return x, y, base


def validate_args(args):
    if args.test_type not in TEST_TYPES:
        raise UserError(f"unknown --test_type {args.test_type!r}; choose one of {', '.join(TEST_TYPES)}")
    if args.test_type in ("cx_cy", "baseline_b"):
        if args.ipc <= 0 or args.ipcy <= 0:
            raise UserError(f"--test_type {args.test_type} needs --ipc N and --ipcy y (1 <= y <= N)")
        if args.ipcy > args.ipc:
            raise UserError(f"--ipcy {args.ipcy} is larger than --ipc {args.ipc}; pass 1 <= --ipcy <= --ipc")
        if args.dataset == "imagenet" and "epochs" not in args.explicit:
            # fixed: the reference used the epochs of the full --ipc here (spec mdc §14 item 7)
            args.epochs = ipc_epoch(args.ipcy, args.factor, args.nclass)
    if args.slct_ipc > 0:  # YOCO pruning (spec yoco §4, §6.1)
        from utils.pruning import default_factor

        if args.test_type != "other" or args.slct_type == "random":
            raise UserError("--slct_ipc prunes a condensed set: use it with --test_type other and no -s random")
        if 0 < args.ipc <= args.slct_ipc:
            raise UserError(f"--slct_ipc {args.slct_ipc} must be smaller than --ipc {args.ipc} (IPC_T < IPC_F)")
        if "factor" not in args.explicit:
            args.factor = default_factor(args.condense_key, args.dataset)
            if args.dataset == "imagenet" and "epochs" not in args.explicit:  # from IPC_F*f^2, as the reference (B14)
                args.epochs = ipc_epoch(args.ipc, args.factor, args.nclass)
    if args.repeat < 1 or args.epochs < 1:
        raise UserError("--repeat and --epochs must be >= 1")
    if args.same_compute and args.factor > 1:
        args.epochs = max(1, args.epochs // args.factor**2)


# ------------------------------------------------------------------------------------------------
# evaluation


def loaders(args, x, y, device, pre_normalised):
    mean, std = mean_std(args.dataset)
    norm = Normalize(mean, std).to(device)
    if args.dataset == "imagenet":  # per-sample RRC, flip, jitter, lighting (spec mdc §11.2)
        tf = imagenet_train_transform(args.size, rrc=args.rrc, from_tensor=True)
        train = TensorLoader(x, y, args.batch_size, True, device, sample_transform=tf)
        val_ds = imagenet_folder(args.imagenet_dir, "val", args.nclass, args.phase, args.dseed,
                                 transform=imagenet_test_transform(args.size))
        val = DeviceLoader(torch.utils.data.DataLoader(val_ds, batch_size=max(1, args.batch_size // 2),
                                                        num_workers=args.workers), device)
    else:
        # mtt/dsa/kip under YOCO are normalised a second time, consistently (spec yoco §1.2)
        train = TensorLoader(x, y, args.batch_size, True, device, transform=None if pre_normalised else norm)
        tx, ty = test_tensors(args)
        val = TensorLoader(tx, ty, 500, False, device)
    return train, val


def eval_nets(args):
    """``--eval_net`` names, else the reference model; YOCO adds ResNet-10-BN and DenseNet for
    pruned CIFAR sets unless ``--no_resnet`` (spec yoco §6.2)."""
    if args.eval_net:
        return [n.strip() for n in args.eval_net.split(",") if n.strip()]
    nets = ["default"]
    if args.slct_ipc > 0 and not args.no_resnet and args.dataset != "imagenet":
        nets += ["resnet10_bn", "densenet"]
    return nets


def make_model(args, name, device):
    if name == "default":
        return define_model(args, args.nclass).to(device)
    try:
        return create_model(name, nclass=args.nclass, nch=args.nch, size=args.size, depth=args.depth,
                            width=args.width, norm_type=args.norm_type, dataset=args.dataset).to(device)
    except ValueError as e:
        raise UserError(f"--eval_net: {e}")


def evaluate_set(args, x, y, device, pre_normalised=False, log=print, done=None, on_run=None):
    """Train ``args.repeat`` fresh networks per evaluation net; returns the per-net results.

    ``done`` ({net: [finished runs]}) skips repeats finished by an interrupted invocation;
    ``on_run(net, runs)`` is called after every repeat (test.py keeps them in a ``.partial`` file).
    """
    train, val = loaders(args, x, y, device, pre_normalised)
    out = {}
    for name in eval_nets(args):
        label = args.net_type if name == "default" else name
        runs = list((done or {}).get(label, []))[:args.repeat]
        if runs:
            log(f"[{label}] {len(runs)} of {args.repeat} repeats already done (resumed)")
        for r in range(len(runs), args.repeat):
            model = make_model(args, name, device)
            res = train_protocol(model, train, val, args, desc=f"{label} {r + 1}/{args.repeat}")
            runs.append(res)
            log(f"[{label}] repeat {r + 1}: best {res['best']:.2f}  last {res['last']:.2f}  ({res['seconds']:.0f}s)")
            if on_run is not None:
                on_run(label, runs)
        out[label] = {"runs": runs, "best": summarize([r["best"] for r in runs]),
                      "last": summarize([r["last"] for r in runs])}
        log(f"[{label}] best {out[label]['best']['mean']:.2f} ± {out[label]['best']['std']:.2f}   "
            f"last {out[label]['last']['mean']:.2f} ± {out[label]['last']['std']:.2f}")
    return out


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


def main(args):
    validate_args(args)
    device = resolve_device(args.device)
    set_seed(args.seed, args.deterministic)
    t0 = time.time()
    x, y, source = build_train_set(args)
    pre_norm = args.slct_type in PRE_NORMALISED and args.condense_key == "idc"
    results_file = default_results_file(args, source)
    if args.save_subset:
        save_condensed(args.save_subset, x, y)
        print(f"saved the evaluated training set ({len(x)} images) to {args.save_subset}")
    print(f"{args.test_type}: {len(x)} training images of {args.nclass} classes from {source}; "
          f"{args.epochs} epochs x {args.repeat} on {device}")
    partial = PartialRuns(results_file, args)
    res = evaluate_set(args, x, y, device, pre_norm, done=partial.done, on_run=partial.save)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": time.time() - t0,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(), "torch": torch.__version__,
        "source": source, "test_type": args.test_type, "n_train": len(x), "results": res,
        "args": {k: v for k, v in vars(args).items() if k != "explicit"},
    }
    append_record(results_file, record)
    partial.clear()
    print(f"results appended to {results_file}")
    return record


if __name__ == "__main__":
    cli(main, get_args_parser)
