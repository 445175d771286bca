"""The evaluation protocol of a condensed set (reference he-y/Multisize-Dataset-Condensation/test.py; reference
he-y/you-only-condense-once/test.py; docs/evaluating.md#protocol; docs/algorithms.md#pruned-set-evaluation): train fresh
networks on it
and validate on the real test set. Called by ``test.py``, by the in-run evaluations of the
condensation loop (``condensation.loop``) and, for YOCO's pruned sets, through ``test.py --slct_ipc``;
the validation batches come from ``data.loaders.test_loader``.

``train_protocol``: SGD lr / momentum / weight decay (0.01 / 0.9 / 5e-4), E epochs, LR × 0.2 at
⌊2E/3⌋ and ⌊5E/6⌋ (stepped per epoch), per-sample DSA then CutMix (p = mix_p, β = 1), validations every
⌊E/4⌋ epochs (and at the final epoch); it reports the best and the last of them. With a held-out set
(``test.py --val_per_class``, ``held_out_set``) it also validates on it at the same epochs and reports the test
accuracy at the best of those (``best_on_val``; docs/evaluating.md#held-out-validation). Without DSA
(``--dsa False``, e.g. ``-s dc``) the non-ImageNet sets get the reference's per-sample RandomCrop
(padding 4) and, for CIFAR, flip instead (``basic_augment``). ``evaluate_set``
repeats it ``--repeat`` times per evaluation network and reports mean ± std.
"""
import functools
import math
import time

import numpy as np
import torch
import torchvision.transforms as T
from tqdm import tqdm

from data.datasets import mean_std
from data.loaders import TensorLoader, held_out_loader, test_loader
from models import create_model, define_model
from training.augment import DiffAug, Normalize, imagenet_train_transform
from utils.config import set_seed
from utils.errors import StopTraining, UserError
from training.precision import amp_for
from training.epochs import evaluate, train_one_epoch


def milestones(epochs):
    return [2 * epochs // 3, 5 * epochs // 6]


def train_protocol(model, train_loader, val_loader, args, desc="eval", progress=True, on_epoch=None, held_out=None):
    """Train a fresh ``model`` on a (condensed) set and validate 4 times (MDC reference test.py, test_data;
    docs/evaluating.md#protocol).

    Uses args.epochs, lr, momentum, weight_decay, dsa, dsa_strategy, mixup, mix_p, beta, precision.
    Returns a dict with best/last top-1, the validation curve ``curve`` ([(epoch, test top-1)]) and the wall time.
    ``held_out`` (``held_out_set``): also evaluated at every validation epoch, after the test set (eval mode, no
    random draw: the training and the test numbers are the same with and without it); adds ``val_curve``
    ([(epoch, held-out top-1)], the epochs of ``curve``) and ``best_on_val`` (``best_on_validation``).
    ``on_epoch(epoch, values)`` sees each epoch's ``train_acc``/``train_loss`` (and ``test_acc``/``test_loss``,
    and ``val_acc``/``val_loss`` with ``held_out``, at validations): values already read (experiment tracking,
    tracking/client.py).
    """
    t0 = time.time()
    amp = amp_for(getattr(args, "precision", "fp32"), next(model.parameters()).device)  # training/precision.py
    opt = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(args.epochs), gamma=0.2)
    aug = DiffAug(args.dsa_strategy, batch=False) if args.dsa else None
    freq = max(1, args.epochs // 4)  # the reference validates every E//4 epochs
    best, last, curve, val_curve = 0.0, 0.0, [], []
    quiet = {} if progress else {"disable": True}  # otherwise TQDM_DISABLE in the environment decides
    bar = tqdm(range(1, args.epochs + 1), desc=desc, leave=False, dynamic_ncols=True, **quiet)
    for epoch in bar:
        top1, _, loss = train_one_epoch(model, train_loader, opt, aug=aug, mixup=args.mixup, mix_p=args.mix_p,
                                        beta=args.beta, amp=amp)
        sched.step()
        if not math.isfinite(loss):
            raise StopTraining(f"non-finite loss at epoch {epoch}")
        values = {"train_acc": top1, "train_loss": loss}
        if epoch % freq == 0 or epoch == args.epochs:
            acc, _, test_loss = evaluate(model, val_loader, amp=amp)
            curve.append((epoch, acc))
            best, last = max(best, acc), acc
            values.update(test_acc=acc, test_loss=test_loss)
            if held_out is not None:
                v_acc, _, v_loss = evaluate(model, held_out, amp=amp)
                val_curve.append((epoch, v_acc))
                values.update(val_acc=v_acc, val_loss=v_loss)
            bar.set_postfix(train=f"{top1:.1f}", test=f"{acc:.2f}", best=f"{best:.2f}")
        if on_epoch is not None:
            on_epoch(epoch, values)
    res = {"best": best, "last": last, "curve": curve, "seconds": time.time() - t0}
    if held_out is not None:
        res.update(val_curve=val_curve, best_on_val=best_on_validation(curve, val_curve))
    return res


def best_on_validation(curve, val_curve):
    """The test accuracy at the validation epoch of the highest held-out accuracy: ``curve`` and ``val_curve`` are
    ``[(epoch, top-1)]`` of the same epochs; of several epochs with the same highest held-out accuracy the
    earliest counts (docs/evaluating.md#held-out-validation)."""
    if [e for e, _ in curve] != [e for e, _ in val_curve]:
        raise ValueError("the test and held-out curves must have the same epochs")
    k = max(range(len(val_curve)), key=lambda i: val_curve[i][1])  # max keeps the first of equal values
    return curve[k][1]


def summarize(values):
    """Mean and (population, as numpy) std of a list of accuracies."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std())}


def eval_batch(args):
    """The batch size of the validation passes (MDC reference test.py, test_data): ImageNet half the training
    batch, the others 500 (``data.loaders`` caps it on the CPU)."""
    return max(1, args.batch_size // 2) if args.dataset == "imagenet" else 500


def held_out_set(args, device):
    """The batches of ``test.py --val_per_class``'s held-out training images (``data.loaders.held_out_loader``,
    the test set's batch size and loader workers; docs/evaluating.md#held-out-validation), or None when the option
    is off. Built once per evaluation; ``evaluate_set`` validates every repeat on it."""
    if args.val_per_class <= 0:
        return None
    return held_out_loader(args, device, eval_batch(args), workers=args.workers)


def loaders(args, x, y, device, pre_normalised):
    """Training batches of the condensed set and the validation batches (MDC reference test.py, test_data;
    docs/evaluating.md#protocol)."""
    if args.dataset == "imagenet":  # per-sample RRC, flip, jitter, lighting (MDC reference test.py, test_data;
    # docs/evaluating.md#protocol)
        tf = imagenet_train_transform(args.size, rrc=args.rrc, from_tensor=True)
        train = TensorLoader(x, y, args.batch_size, True, device, sample_transform=tf, workers=args.workers)
        return train, test_loader(args, device, eval_batch(args), workers=args.workers)
    # mtt/dsa/kip under YOCO are normalised a second time, consistently (YOCO reference utils/img_loader.py,
    # load_data_path; docs/algorithms.md#yoco-condensed-inputs)
    norm = Normalize(*mean_std(args.dataset)).to(device)
    per_sample = None if args.dsa else basic_augment(args.dataset, args.size)
    train = TensorLoader(x if args.dsa else x.cpu(), y, args.batch_size, True, device,
                         transform=None if pre_normalised else norm, sample_transform=per_sample)
    return train, test_loader(args, device, eval_batch(args))


def basic_augment(dataset, size):
    """The reference's per-sample augmentation of a set evaluated without DSA (``--dsa False``, e.g. the
    ``-s dc`` hook; its ``args.augment``, MDC reference argument.py; data.py, transform_cifar): RandomCrop(size, padding
    4), plus a horizontal flip for CIFAR; before Normalize, as its transform_{cifar,svhn,mnist,fashion}."""
    tfs = [T.RandomCrop(size, padding=4)]
    if dataset.startswith("cifar"):
        tfs.append(T.RandomHorizontalFlip())
    return T.Compose(tfs)


def eval_nets(args):
    """``--eval_net`` names, else the reference model; YOCO adds ResNet-10-BN and DenseNet for
    pruned CIFAR sets unless ``--no_resnet`` (YOCO reference test.py, test_data;
    docs/algorithms.md#pruned-set-evaluation)."""
    if args.eval_net:
        return [n.strip() for n in args.eval_net.split(",") if n.strip()]
    nets = ["default"]
    if args.slct_ipc > 0 and not args.no_resnet and args.dataset != "imagenet":
        nets += ["resnet10_bn", "densenet"]
    return nets


def check_eval_nets(args):
    """Before any work (``evaluation.sources.validate_args``): every network ``evaluate_set`` will train can be
    built -- each ``--eval_net`` name is a registered model and fits the data (size, channels, depth), as does
    the default ``--net_type``. The networks are built on the ``meta`` device (no memory, no weights, no draw
    from any random generator), so the check costs milliseconds. Returns the names."""
    names = eval_nets(args)
    if not names:
        raise UserError(f"--eval_net {args.eval_net!r} names no network; pass comma-separated model names, e.g. "
                        "--eval_net convnet,resnet10_bn (or leave it out for the default network)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"--eval_net names {', '.join(twice)} twice; name each network once")
    for name in names:
        flag = "--net_type" if name == "default" else "--eval_net"
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                make_model(args, name, "meta")
        except UserError as e:
            msg = str(e)
            raise UserError(msg if msg.startswith(flag) else f"{flag}: {msg}") from None
        except Exception:  # noqa: BLE001 -- an operation the meta device lacks: the real build will tell
            continue
    return names


def make_model(args, name, device):
    if name == "default":
        return define_model(args, args.nclass).to(device)
    try:
        return create_model(name, nclass=args.nclass, nch=args.nch, size=args.size, depth=args.depth,
                            width=args.width, norm_type=args.norm_type, dataset=args.dataset).to(device)
    except ValueError as e:
        raise UserError(f"--eval_net: {e}")


def repeat_seed(seed, net_index, repeat):
    """The seed of repeat ``repeat`` of the ``net_index``-th evaluation network: ``seed + repeat`` for the
    first network (repeat 0 uses --seed itself), plus 1000 per further network. Seeding every repeat by
    its index makes it independent of the repeats before it, so a resumed ``test.py`` run trains the
    same networks as an uninterrupted one (bit for bit on CPU with ``--deterministic True``). The
    reference seeds once before all repeats; the accuracies are draws of the same distribution."""
    return seed + 1000 * net_index + repeat


def evaluate_set(args, x, y, device, pre_normalised=False, log=print, done=None, on_run=None, seed_repeats=False,
                 on_epoch=None, held_out=None):
    """Train ``args.repeat`` fresh networks per evaluation net; returns the per-net results: ``{net: {"runs":
    [train_protocol's dicts], "best": {"mean", "std"}, "last": {...}}}``, plus ``"best_on_val"`` with ``held_out``.

    ``done`` ({net: [finished runs]}) skips repeats finished by an interrupted invocation;
    ``on_run(net, runs)`` is called after every repeat (test.py keeps them in a ``.partial`` file);
    ``seed_repeats`` seeds every repeat with ``repeat_seed`` (test.py; the evaluations inside a
    condensation run keep drawing from the run's random stream). A negative --seed means unseeded.
    ``on_epoch(net, repeat, epoch, values)``: ``train_protocol``'s per-epoch values (test.py's tracker).
    ``held_out`` (``held_out_set``; test.py ``--val_per_class``): every repeat is also validated on it; the
    condensation loop's in-run evaluations pass none. Resumed repeats (``done``) keep the curves they were saved with.
    """
    train, val = loaders(args, x, y, device, pre_normalised)
    out = {}
    for i, name in enumerate(eval_nets(args)):
        label = args.net_type if name == "default" else name
        runs = list((done or {}).get(label, []))[:args.repeat]
        if runs:
            log(f"[{label}] {len(runs)} of {args.repeat} repeats already done (resumed)")
        for r in range(len(runs), args.repeat):
            if seed_repeats and args.seed is not None and args.seed >= 0:
                set_seed(repeat_seed(args.seed, i, r), args.deterministic)
            model = make_model(args, name, device)
            per_epoch = None if on_epoch is None else functools.partial(on_epoch, label, r)
            res = train_protocol(model, train, val, args, desc=f"{label} {r + 1}/{args.repeat}", on_epoch=per_epoch,
                                 held_out=held_out)
            runs.append(res)
            on_val = f"  best-on-val {res['best_on_val']:.2f}" if held_out is not None else ""
            log(f"[{label}] repeat {r + 1}: best {res['best']:.2f}  last {res['last']:.2f}{on_val}  "
                f"({res['seconds']:.0f}s)")
            if on_run is not None:
                on_run(label, runs)
        keys = ("best", "last") + (("best_on_val",) if held_out is not None else ())
        out[label] = {"runs": runs, **{k: summarize([r[k] for r in runs]) for k in keys}}
        means = "   ".join(f"{k.replace('_', '-')} {out[label][k]['mean']:.2f} ± {out[label][k]['std']:.2f}"
                           for k in keys)
        log(f"[{label}] {means}")
    return out
