"""YOCO step 2: train one network on the decoded condensed set and log every sample's training output
(reference he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#the-dynamics-run).

    python get_training_dynamics.py -d cifar10 --condense_key idc --ipc 10
    python get_training_dynamics.py -d fashion --ipc 10 --custom-data-dir <folder or .pt> --epochs 300 --compact

Protocol (YOCO reference get_training_dynamics.py; docs/algorithms.md#the-dynamics-run): see ``yoco/dynamics.py``. Test
every 10 epochs and at
the last. Output ``{base_dir}/ipc{IPC}/``: ``td-ipc{IPC}.pickle`` (reference layout; ``--compact`` also or
only writes the lossless compact ``td-ipc{IPC}.pt``; ``--compact stats`` writes instead only
``td-ipc{IPC}-stats.pt``, the per-sample statistics the scores need, ~13 B/sample/epoch, no pickle),
``ckpt-last.pt``, ``ckpt-best.pt`` (``{'model_state_dict', 'epoch'}``),
``log-train-ipc{IPC}.log``.

Restartable: every ``--save-every`` epochs the run state and the records since the previous save go to
``resume/`` (chunks, each written once); ``--resume`` continues from there. Logs and checkpoints are written
atomically; the dynamics log only when the run is complete.
Fixes (docs/reference-differences.md#bugs-fixed): B1 single ``--reproduce_exp`` (default reproduce_3); B12 ``--epochs``
honoured.
"""
import argparse
import math
import os
import time

from cli.arguments import cli, interrupt_note, rerun, str2bool
from utils.errors import UserError
from cli.options import GROUPS, add_tracking_args, compat_group, described_parser
from utils.ranges import ranged
from cli.yoco_options import DSA_STRATEGY, add_condensed_set_args


EXAMPLES = """examples:
  python get_training_dynamics.py -d cifar10 --condense_key idc --ipc 10 --reproduce_exp reproduce_1
  python get_training_dynamics.py -d fashion --custom-data-dir <run folder> --epochs 200 --data-dir <datasets>
  python get_training_dynamics.py ... --resume        # continue an interrupted run
"""


def get_args_parser():
    p = described_parser("YOCO step 2: train a network on the decoded condensed set and log every sample's output "
                    "(the training dynamics the scores are computed from)", EXAMPLES)
    hide = argparse.SUPPRESS
    a = ranged(p.add_argument_group("training").add_argument)
    a("--epochs", type=int, valid=">= 1", default=1000, help="training epochs")
    a("--iterations", type=int, valid=">= 1", default=None,
      help="train at least this many iterations instead (whole epochs)")
    a("--batch-size", "--batch_size", dest="batch_size", type=int, valid=">= 1", default=64, help="batch size")
    a("--lr", type=float, valid="> 0", default=0.01, help="SGD learning rate")
    a("--iterations-per-testing", type=int, valid="any", default=800, help=hide)  # unused by the reference
    a("--test-period", type=int, valid=">= 1", default=10, help="test every N epochs and after the last")
    a("--data-dir", "--data_dir", dest="data_dir", default="datasets", help="torchvision root of the test set")
    a("--download", action="store_true", help="let torchvision download a missing test set")
    a("--imagenet-dir", "--imagenet_dir", dest="imagenet_dir", default="datasets/imagenet",
      help="ImageNet folder with train/ and val/")
    a("--score_file", default="", help=hide)  # no effect in the reference; must stay empty
    a("--dsa", type=str2bool, default=True, help="differentiable Siamese augmentation per sample")
    a("--dsa_strategy", default=None, help=f"DSA operations (default {DSA_STRATEGY}, without flip for mnist/svhn)")
    a("--mixup", type=str2bool, default=True, help="CutMix with probability --mix_p")
    a("--mix_p", type=float, valid="[0, 1]", default=0.5, help="CutMix probability")
    a("--beta", type=float, valid="> 0", default=1.0, help="CutMix Beta(β, β) parameter")
    a("--run_tag", default="", help=hide)  # unused by the reference's dynamics script
    a("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
      help="arithmetic of the network passes: fp32 (faithful), tf32 (CUDA), bf16 autocast (docs/speed.md)")
    a("--seed", type=int, valid="-1 or >= 0", default=None,
      help="global seed (default: k for --reproduce_exp reproduce_k, else 0; the reference is unseeded); -1 = unseeded")
    a = ranged(p.add_argument_group("output and resume").add_argument)
    a("--compact", nargs="?", const="also", default=None, choices=["also", "only", "stats"],
      help="also (or only) write the lossless compact log td-ipc{IPC}.pt; stats: only the score statistics "
           "td-ipc{IPC}-stats.pt (smallest; cannot be turned back into the pickle)")
    a("--save-every", dest="save_every", type=int, valid=">= 0", default=50,
      help="resume checkpoint every N epochs (0: none)")
    a("--resume", action="store_true", help="continue an interrupted run from {out}/resume/")
    a("--stop-after-epochs", dest="stop_after", type=int, valid=">= 0", default=0,
      help="train at most N epochs in this invocation, save and exit (continue with --resume)")
    a("--lock-wait", "--lock_wait", dest="lock_wait", type=int, valid="-1 or >= 0", default=0,
      help="seconds to wait for an output folder that another process is using (0: stop at once with an error "
           "naming it; -1: as long as it takes)")
    a("--folder-lock", "--folder_lock", dest="folder_lock", type=str2bool, default=True,
      help="lock the output folder against a second process; False only on a file system without locks")
    add_tracking_args(ranged(p.add_argument_group(GROUPS["tracking"]).add_argument), "generate-score", "",
                      "Aim run name (default: the task name, ipc{IPC})")
    return compat_group(add_condensed_set_args(p))


def resume_plan(args, out_dir, resume_dir):
    """``finished`` (``--resume`` of a complete run), ``resume`` (an interrupted run to continue) or ``fresh``;
    a fresh run never goes over another run's dynamics (UserError) unless the command resumes the folder
    (``--resume`` where nothing was saved yet starts it again)."""
    from utils.files import check_fresh_folder
    from yoco.dynamics import STATE

    finished = os.path.isfile(os.path.join(out_dir, "ckpt-last.pt")) and not os.path.isdir(resume_dir)
    if args.resume and finished:
        return "finished"
    if args.resume and os.path.isfile(os.path.join(resume_dir, STATE)):
        return "resume"
    if args.resume:  # nothing saved to continue from (a run interrupted before its first save): from scratch
        return "fresh"
    check_fresh_folder(out_dir, lambda n: n in ("args.yaml", "resume") or n.startswith(("td-", "ckpt-")),
                       "dynamics run", "--base-dir/--task-name")
    return "fresh"


def check_args(args):
    """The checks ``main`` runs before any work (also the table scripts' pre-check, sweep/precheck.py)."""
    from yoco.dynamics import resolve_settings

    resolve_settings(args)


def main(args):
    # the work modules load torch: imported here so that -h does not need it
    from utils.config import resolve_device, set_seed
    from data.datasets import dataset_folders
    from utils.files import check_apart, check_output_dir
    from utils.runlock import FolderLock
    from yoco.dynamics import DynamicsTrainer, load_condensed_set, resolve_paths, test_loader

    check_args(args)
    resolve_paths(args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    check_output_dir(args.base_dir, "output folder", "--base-dir")  # before any work; creates nothing
    check_apart(args.base_dir, "--base-dir", [(args.custom_data_dir, "--custom-data-dir"), *dataset_folders(args)])
    x, y = load_condensed_set(args)
    task = args.task_name or f"ipc{args.ipc}"
    out_dir = os.path.join(args.base_dir, task)
    resume_dir = os.path.join(out_dir, "resume")
    lock = FolderLock(out_dir, args.lock_wait, what="dynamics run", flag="--base-dir", wait_flag="--lock-wait",
                      off_flag="--folder-lock", enabled=args.folder_lock)
    try:
        plan = resume_plan(args, out_dir, resume_dir)  # refusals before any work
    except UserError as e:
        lock.check_free(e)  # a folder in use right now: say by whom
    trainer = test = None
    if plan != "finished":
        trainer = DynamicsTrainer(args, x, y, device)
        test = test_loader(args, device)
    # the inputs are good: now the output folder may appear, and it is this process's until the run ends
    # (utils/runlock.py); what to do is decided again under the lock, where a previous holder's work is complete
    with lock:
        plan = resume_plan(args, out_dir, resume_dir)
        if plan == "finished":
            print(f"{out_dir} holds a finished dynamics run: nothing to do")
            return {"out_dir": out_dir, "epochs_done": args.epochs, "complete": True}
        if args.resume and plan == "fresh":
            print(f"--resume: no interrupted run in {resume_dir}: starting from scratch")
            args.resume = False
        if trainer is None:
            trainer = DynamicsTrainer(args, x, y, device)
            test = test_loader(args, device)
        return train(args, out_dir, resume_dir, trainer, test, device, y)


def note_kept(resume_dir, epoch, every):
    """Ctrl-C or SIGTERM from here on: one line naming the resume state kept (epoch ``epoch``, or none yet) and the
    command that continues (``cli.arguments.interrupt_note``; docs/failures.md#an-interruption-is-one-line)."""
    def text():
        again = rerun("--resume")
        if epoch:
            return f"the resume state after epoch {epoch} is kept in {resume_dir}; {again} to continue from it"
        when = f"every {every} epochs, --save-every" if every > 0 else "--save-every 0: never"
        return f"no resume state was saved yet ({when}); {again} to start the run again"
    interrupt_note(text)


def train(args, out_dir, resume_dir, trainer, test, device, y):
    """The run in its (held) output folder: from scratch or from ``resume/``, to the final files."""
    from utils.config import jsonable
    from utils.files import clean_stale_temps, save_config
    from tracking.client import open_tracker, tracker_of
    from yoco.dynamics import TextLog, load_state
    from yoco.dynamics_io import DynamicsLog

    for folder in (out_dir, resume_dir):
        clean_stale_temps(folder, print)
    log, chunks, start, best = DynamicsLog(), [], 0, {"acc": -1.0, "epoch": -1}
    if args.resume:
        start, best, chunks = load_state(resume_dir, trainer)
    note_kept(resume_dir, start, args.save_every)
    msg = TextLog(os.path.join(out_dir, f"log-train-ipc{args.ipc}.log"), fresh=not args.resume)
    if not args.resume:
        save_config(args, os.path.join(out_dir, "args.yaml"))
    msg(f"{args.condense_key}/{args.dataset} IPC {args.ipc} f {args.factor}: {args.num_samples} decoded images, "
        f"{args.network}, {args.epochs} epochs x {len(trainer.loader)} iterations on {device}; "
        f"{'resuming at epoch ' + str(start) if start else 'data ' + args.custom_data_dir}")
    # experiment tracking (docs/tracking.md): the YOCO trainer's per-epoch series; a resumed run continues its Aim run
    tracker = open_tracker(args, kind=tracker_of(args), folder=out_dir, experiment=args.exp_name,
                           name=args.run_name or os.path.basename(out_dir), hparams=jsonable(vars(args)),
                           resume_from=start or None, warn=msg, tag=args.run_tag)
    try:
        return epochs(args, out_dir, resume_dir, trainer, test, y, log, chunks, start, best, msg, tracker)
    finally:
        tracker.close()


def epochs(args, out_dir, resume_dir, trainer, test, y, log, chunks, start, best, msg, tracker):
    """The epochs from ``start``, the resume saves and, when the last epoch is done, the output files."""
    from tqdm import tqdm

    from utils.files import atomic_save
    from training.epochs import evaluate
    from yoco.dynamics import save_state, write_outputs

    stop = args.epochs if args.stop_after <= 0 else min(args.epochs, start + args.stop_after)
    bar = tqdm(range(start, stop), initial=start, total=args.epochs, desc="dynamics", dynamic_ncols=True)
    t0 = time.time()
    for e in bar:
        top1, loss = trainer.epoch(e, log)
        if not math.isfinite(loss):
            raise UserError(f"non-finite training loss at epoch {e}; lower --lr")
        lr = trainer.opt.param_groups[0]["lr"]
        for name, v in (("lr", lr), ("train_loss", loss), ("train_acc", top1)):
            tracker.scalar(name, v, e, epoch=e)
        if e % args.test_period == 0 or e == args.epochs - 1:  # YOCO reference get_training_dynamics.py;
        # docs/algorithms.md#the-dynamics-run: epochs 0, 10, ... and last
            acc, _, test_loss = evaluate(trainer.model, test, amp=trainer.amp)
            tracker.scalar("test_loss", test_loss, e, epoch=e)
            tracker.scalar("test_acc", acc, e, epoch=e)
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
            note_kept(resume_dir, done, args.save_every)
    bar.close()
    if stop < args.epochs:
        msg(f"stopped after epoch {stop - 1} ({time.time() - t0:.0f}s); continue with the same command and --resume")
        return {"out_dir": out_dir, "epochs_done": stop, "complete": False}
    write_outputs(args, out_dir, trainer.model, log.records, resume_dir, chunks, msg, y)
    msg(f"done in {time.time() - t0:.0f}s: best test {best['acc']:.2f} at epoch {best['epoch']}; files in {out_dir}")
    return {"out_dir": out_dir, "epochs_done": args.epochs, "complete": True, "best": best}


if __name__ == "__main__":
    cli(main, get_args_parser)
