"""Class-partitioned condensation (reference he-y/Multisize-Dataset-Condensation/condense_reg_mp.py;
docs/algorithms.md#class-partitioned-condensation, MDC Appendix B.6): blocks of ``--nclass_sub k`` classes.

    python condense_reg_mp.py --reproduce -d cifar100 -f 2 --ipc 10 --adaptive_reg True --nclass_sub 20 --phase 0
    torchrun --standalone --nproc_per_node 5 condense_reg_mp.py --reproduce -d cifar100 ... --nclass_sub 20
    python condense_reg_mp.py --reproduce -d cifar100 ... --nclass_sub 20 --merge
    python test.py --reproduce -d cifar100 -f 2 --ipc 10 --test_data_dir <base>_20_merged

One partition is a thin layer over ``condensation/runner.py``, the run of condense_reg.py (loop:
``condensation/loop.py``): the synthetic tensor holds only the classes p·k … (p+1)·k−1 with their real ids
as targets, the network keeps all nclass outputs, network updates use all-class batches of the full training
set, and "global" MLS mode averages over the partition's classes only (so each phase makes its own
decision, mdc 17 in docs/reference-differences.md#bugs-fixed). Folder: ``<base>_{k}_phase{p}``, where ``<base>`` is
``--save_dir`` or the condense_reg.py folder name.

Plain ``python``: the one ``--phase p`` (as the reference). Under ``torchrun`` (``condensation/parallel.py``):
rank r condenses phases r, r+W, … one after the other, each exactly the ``--phase p`` run, then rank 0
merges the finished partitions into ``<base>_{k}_merged/data.pt`` + ``manifest.json``
(``data/partitions.py``; ``--merge`` does only that, for parts made by separate jobs). Each partition
folder, and the merged one, belongs to one process at a time (``--lock_wait``, ``utils/runlock.py``).
``--global_mls True``: the partitions step together (one per rank) and make one global MLS decision;
``--exact True``: the sharded run equals ``condense_reg.py --exact True`` (docs/parallel.md).

Differences from the reference mp script: the real class batches use ``--batch_real`` (the reference
hard-coded 64, mdc 17 in docs/reference-differences.md#bugs-fixed), resume and DREAM work as in condense_reg.py,
ImageNet loads the
classes of phase 0 (as the reference mp script, which ignored ``--phase`` there), the in-run evaluations
are off (evaluate the merged set), and ``--save_dir`` names the base of the partition folders (the
partitions no longer write into one folder).
"""
import copy
import sys

from cli.arguments import check_nclass_sub, cli
from utils.errors import StopTraining, UserError
from cli.options import M, condense_parser


def get_args_parser():
    return condense_parser("Class-partitioned condensation (condense_reg_mp.py): --nclass_sub k, --phase p or "
                           "torchrun", M)


def partition(args):
    """The classes of partition ``--phase p``: p·k … (p+1)·k−1 for ``--nclass_sub k`` (MDC reference condense_reg_mp.py;
    docs/algorithms.md#class-partitioned-condensation)."""
    k, p, n = args.nclass_sub, args.phase, args.nclass
    check_nclass_sub(k, n)
    if not 0 <= p < n // k:
        raise UserError(f"--phase {p}: it is the partition this process condenses; with --nclass_sub {k} and "
                        f"--nclass {n} use 0..{n // k - 1}, or launch under torchrun to run them all")
    return list(range(p * k, (p + 1) * k))


def partition_base(args):
    """``--save_dir``, or the condense_reg.py folder name of these settings (with its ``_noreg``/``_exact``
    markers): the partition folders are ``<base>_{k}_phase{p}``, the merged set ``<base>_{k}_merged``."""
    if args.save_dir:
        return args.save_dir
    from condensation.run_files import default_save_dir
    from condensation.runner import finalize_args

    a = copy.copy(args)
    a.nclass_sub, a.phase = -1, -1
    return default_save_dir(finalize_args(a))


def partition_folder(args, p):
    return f"{partition_base(args)}_{args.nclass_sub}_phase{p}"


def final_iteration(args):
    return args.niter * 100 // args.inner_loop


def merge(args, log=print):
    """One class-major ``[data, targets]`` of every partition + manifest (``data/partitions.py``), written while
    this process holds the merged folder (``utils/runlock.py``; a refused merge leaves no folder it created)."""
    from data.partitions import merge_parts, merged_dir
    from utils.files import check_output_dir
    from utils.runlock import FolderLock

    base = partition_base(args)
    out = merged_dir(base, args.nclass_sub)
    check_output_dir(out, "merged set folder", "--save_dir")  # before the lock creates the folder
    lock = FolderLock(out, args.lock_wait, what="merge", enabled=args.folder_lock).acquire()
    try:
        # the partitions' args.yaml must name this command's dataset (and --nclass, --nclass_sub: data/partitions.py)
        return merge_parts(base, args.nclass_sub, args.nclass, niter=final_iteration(args),
                           allow_mismatch=args.allow_mismatch, log=log, out_flag="--save_dir",
                           expect={"dataset": (args.dataset, "-d/--dataset")})
    except UserError:
        lock.remove_created()
        raise
    finally:
        lock.release()


def run_world(args, world):
    """Under torchrun: rank r condenses phases r, r+W, …; rank 0 merges when every rank is done."""
    from condensation.mls import MEASURES
    from condensation.parallel import phases_of
    from condensation.runner import run_condensation

    n_part = args.nclass // args.nclass_sub
    if args.phase >= 0:
        raise UserError(f"--phase {args.phase}: under torchrun the ranks take the phases (rank r: r, r+W, ...); "
                        "drop --phase")
    together = args.exact or args.global_mls
    if together and world.size != n_part:
        flag = "--exact" if args.exact else "--global_mls"
        raise UserError(f"{flag} True steps all {n_part} partitions together, one per rank, but the job has "
                        f"{world.size} ranks: launch {n_part} processes (torchrun --nproc_per_node {n_part}, or over "
                        f"nodes) or choose --nclass_sub {args.nclass}/W")
    measure = MEASURES.of(args.mls_metric)
    if args.exact and args.adaptive_reg and measure.one_rank:
        sharded = " or ".join(n for n, m in MEASURES.items() if not m.one_rank)
        raise UserError(f"--exact True with --mls_metric {args.mls_metric}: {measure.one_rank}; use --mls_metric "
                        f"{sharded}")
    device = world.device(args.device)
    world.start(device)
    who = f"rank {world.rank} of {world.size}"
    try:
        phases = phases_of(world.rank, world.size, n_part)
        print(f"{who}: phases {phases or 'none (more ranks than partitions)'} on {device}", flush=True)
        for p in phases:
            a = copy.copy(args)
            a.phase = p
            folder = partition_folder(args, p)
            try:
                run_condensation(a, classes=partition(a), save_dir=folder, mp=True, device=device,
                                 world=world if together else None)
            except UserError as e:
                raise type(e)(f"{who}, phase {p} ({folder}): {e}") from None
            except StopTraining as e:
                raise StopTraining(f"{who}, phase {p} ({folder}): {e}") from None
            except Exception as e:  # a crash: name the rank and phase, keep the traceback
                print(f"error: {who} failed in phase {p} ({folder}): {type(e).__name__}: {e}", file=sys.stderr)
                raise
        world.barrier()  # every partition is done (or stopped with --stop_after)
        if world.rank == 0:
            if 0 < args.stop_after < final_iteration(args):
                print(f"not merged: the partitions stopped at iteration {args.stop_after} (--stop_after); relaunch "
                      "with --resume to finish them", flush=True)
            else:
                merge(args)
    finally:
        world.close()


def check_args(args):
    """The checks ``main`` runs before any work (in ``run_condensation``; also the table scripts' pre-check,
    sweep/precheck.py)."""
    from condensation.runner import check_args as check_condensation

    check_condensation(args, mp=True)


def main(args):
    from condensation.parallel import World  # the work modules load torch: not needed for -h

    check_nclass_sub(args.nclass_sub, args.nclass)
    world = World.from_env()
    if args.merge:
        return merge(args) if world.rank == 0 else None
    if world.enabled:
        return run_world(args, world)
    if args.exact or args.global_mls:
        n_part = args.nclass // args.nclass_sub
        raise UserError(f"--exact/--global_mls make the {n_part} partitions step together: launch them under torchrun "
                        f"(torchrun --standalone --nproc_per_node {n_part} condense_reg_mp.py ...); in one process use "
                        "condense_reg.py --exact True")
    from condensation.runner import run_condensation

    return run_condensation(args, classes=partition(args), save_dir=partition_folder(args, args.phase), mp=True)


if __name__ == "__main__":
    cli(main, get_args_parser)
