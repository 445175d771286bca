"""Merge the class partitions of ``condense_reg_mp.py`` into one condensed set (reference
he-y/Multisize-Dataset-Condensation/test.py; docs/algorithms.md#class-partitioned-condensation).

    python -m data.partitions <base> --nclass_sub 20 --nclass 100 [--niter 2000] [--allow_mismatch] [--out DIR]

``condense_reg_mp.py --nclass_sub k --phase p`` writes one run folder per partition, ``<base>_{k}_phase{p}``
for p = 0 … nclass/k − 1, each holding ``data_{it}.pt`` (``[data, targets]`` of its k classes with their
real ids, class-major, MDC reference condense_reg.py, condense; docs/condensing.md#outputs-and-resume), ``args.yaml``
and ``checkpoint.pt``. The reference merged them only
inside ``test.py -s idc_cat``, loading a hard-coded ``data_2000.pt`` of every phase. Here:

* ``resolve_parts`` finds every partition and the data file each one would contribute (as
  ``data.condensed.latest_data_file``: ``data_{niter}.pt``, else ``data.pt``, else the latest
  ``data_{it}.pt``), and refuses, with one-line errors, missing partitions, partitions condensed with
  different number-affecting settings (``args.yaml``, ``NUMBER_KEYS`` minus ``phase``) and partitions at
  different iterations (an interrupted phase whose latest file is older than the others'), unless
  ``allow_mismatch``. Partitions without ``args.yaml`` (the authors' released parts) skip the settings
  and completeness checks. ``test.py -s idc_cat`` evaluates exactly these files.
* ``merge_parts`` concatenates them in phase order into ``<base>_{k}_merged/data.pt`` (one class-major
  ``[data, targets]`` of all classes, readable by plain ``test.py --test_data_dir``) with a
  ``manifest.json`` that records which file of which partition went in. It also refuses a partition
  that has not reached its final iteration ``niter·100 // inner_loop`` (MDC reference condense_reg.py, condense;
  docs/algorithms.md#the-condensation-loop). Every check runs
  before the first byte is written; both files are written atomically.

No torch at import (``-h`` must not need it): the work modules are imported inside the functions.
"""
import argparse
import json
import math
import os
import re
from dataclasses import dataclass

from utils.errors import UserError

MANIFEST = "manifest.json"
MERGED_DATA = "data.pt"
MANIFEST_FORMAT = "mdc-merged-partitions"
MANIFEST_VERSION = 1
_CONDENSE_HINT = ("condense them with `torchrun --nproc_per_node N condense_reg_mp.py ... --nclass_sub {k}` (all "
                  "phases) or `python condense_reg_mp.py ... --nclass_sub {k} --phase P` (one phase)")


@dataclass
class Part:
    """One partition of a class-partitioned run and the data file it contributes."""
    phase: int
    classes: list  # the real class ids p·k … (p+1)·k − 1
    folder: str
    file: str  # path of the chosen data file
    iteration: int | None  # from data_{it}.pt; None for a data.pt
    final_iteration: int | None  # niter·100 // inner_loop from args.yaml; None without args.yaml
    complete: bool | None  # iteration >= final_iteration; None when either is unknown
    settings: dict | None  # args.yaml's NUMBER_KEYS minus phase; None without args.yaml

    @property
    def name(self):
        return os.path.basename(self.file)


def merged_dir(base, nclass_sub):
    """The merged set of the partitions ``<base>_{k}_phase{p}``: ``<base>_{k}_merged``."""
    return f"{os.path.normpath(base)}_{nclass_sub}_merged"


def part_folder(base, nclass_sub, phase):
    return f"{os.path.normpath(base)}_{nclass_sub}_phase{phase}"


def _read_settings(folder):
    """(settings, final iteration) from the folder's ``args.yaml``, or (None, None) without one."""
    import yaml

    from cli.options import NUMBER_KEYS

    path = os.path.join(folder, "args.yaml")
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            saved = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}); restore the run's args.yaml or delete it "
                        "to skip the settings check") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a mapping of settings; restore the run's args.yaml or delete it")
    settings = {k: saved[k] for k in NUMBER_KEYS if k != "phase" and k in saved}
    final = None
    if isinstance(saved.get("niter"), int) and isinstance(saved.get("inner_loop"), int) and saved["inner_loop"] > 0:
        final = saved["niter"] * 100 // saved["inner_loop"]  # the loop's n_iter (MDC reference condense_reg.py,
        # condense; docs/algorithms.md#the-condensation-loop)
    return settings, final


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _setting_differences(parts):
    """{key: {phase: value}} for every setting on which the partitions with an args.yaml disagree (keys in
    NUMBER_KEYS order; a key missing from one args.yaml is not compared, as on resume)."""
    from cli.options import NUMBER_KEYS

    known = [p for p in parts if p.settings is not None]
    diff = {}
    for k in NUMBER_KEYS:
        have = [p for p in known if k in p.settings]
        if have and any(not _same(p.settings[k], have[0].settings[k]) for p in have[1:]):
            diff[k] = {p.phase: p.settings[k] for p in have}
    return diff


def _phases(phases):
    """``phase 3`` / ``phases 0, 1``."""
    phases = list(phases)
    return f"phase{'s' if len(phases) > 1 else ''} {', '.join(map(str, phases))}"


def _by_value(by_phase):
    """[(value, [phases])] in order of first appearance."""
    groups = []
    for ph, v in by_phase.items():
        for value, phs in groups:
            if _same(value, v):
                phs.append(ph)
                break
        else:
            groups.append((v, [ph]))
    return groups


def _common_settings(parts):
    known = [p for p in parts if p.settings is not None]
    if not known:
        return None
    diff = _setting_differences(parts)
    keys = set().union(*(p.settings for p in known)) - set(diff)
    return {k: next(p.settings[k] for p in known if k in p.settings) for k in sorted(keys)}


def _iterations_differ(parts):
    return len({p.iteration for p in parts}) > 1


def describe_part(p):
    """``data_500.pt (it 500 of 500)``: the file and iteration a partition contributes."""
    it = "it unknown" if p.iteration is None else f"it {p.iteration}"
    if p.final_iteration is not None and p.iteration is not None:
        it += f" of {p.final_iteration}"
    return f"{p.name} ({it})"


def describe_parts(parts):
    """One line: ``phase 0 data_500.pt (it 500 of 500), phase 1 …``."""
    return ", ".join(f"phase {p.phase} {describe_part(p)}" for p in parts)


def resolve_parts(base, nclass_sub, nclass, niter=None, allow_mismatch=False, strict=False):
    """The partitions ``<base>_{k}_phase{p}`` of a class-partitioned run and the file each contributes.

    One ``UserError`` names every missing partition (or one without a data file). Unless ``allow_mismatch``:
    partitions whose ``args.yaml`` differ in a number-affecting setting are refused, then partitions at
    different iterations (the fix: finish the interrupted one with ``--resume``). ``strict``: ``niter`` was
    asked for, so every partition must hold ``data_{niter}.pt`` (``latest_data_file``). Returns a list of
    ``Part`` in phase order."""
    from data.condensed import data_iteration, latest_data_file
    from cli.arguments import check_nclass_sub

    check_nclass_sub(nclass_sub, nclass)
    base = os.path.normpath(base)
    folders = [part_folder(base, nclass_sub, p) for p in range(nclass // nclass_sub)]
    missing = [f"phase {p} ({f})" for p, f in enumerate(folders) if not os.path.isdir(f)]
    empty = [f"phase {p} ({f} holds no data_*.pt or data.pt)" for p, f in enumerate(folders) if os.path.isdir(f)
             and not any(re.fullmatch(r"data(_\d+)?\.pt", n) for n in os.listdir(f))]
    if missing or empty:
        hint = ""
        if re.search(r"_\d+_(phase\d+|merged)$", base):
            hint = " (pass the base name, without the _{k}_phase{p} or _{k}_merged suffix)"
        what = "; ".join(([f"missing: {', '.join(missing)}"] if missing else []) + ([f"empty: {', '.join(empty)}"]
                                                                                   if empty else []))
        raise UserError(f"{len(missing) + len(empty)} of {len(folders)} partitions of {base} (--nclass_sub "
                        f"{nclass_sub}) are not condensed{hint}: {what}; " + _CONDENSE_HINT.format(k=nclass_sub))
    parts = []
    for p, folder in enumerate(folders):
        path = latest_data_file(folder, niter, strict)
        settings, final = _read_settings(folder)
        it = data_iteration(path)
        complete = None if it is None or final is None else it >= final
        parts.append(Part(p, list(range(p * nclass_sub, (p + 1) * nclass_sub)), folder, path, it, final,
                          complete, settings))
    if allow_mismatch:
        return parts
    diff = _setting_differences(parts)
    if diff:
        shown = [f"{k}: " + " vs ".join(f"{v!r} in {_phases(phs)}" for v, phs in _by_value(by_phase))
                 for k, by_phase in list(diff.items())[:3]]
        more = f" (+{len(diff) - 3} more)" if len(diff) > 3 else ""
        raise UserError(f"the partitions of {base} were condensed with different settings ({'; '.join(shown)}"
                        f"{more}); condense them again with the same flags, or pass --allow_mismatch True to use "
                        "them anyway")
    if _iterations_differ(parts):
        top = max((p.iteration for p in parts if p.iteration is not None), default=None)
        behind = [p.phase for p in parts if p.iteration is None or (top is not None and p.iteration < top)]
        raise UserError(f"the partitions of {base} are at different iterations ({describe_parts(parts)}); finish "
                        f"the interrupted {_phases(behind)} with `condense_reg_mp.py ... --nclass_sub {nclass_sub} "
                        f"--phase {behind[0] if len(behind) == 1 else 'P'} --resume`, or pass --allow_mismatch True "
                        "to use them as they are")
    return parts


def load_parts(parts, nclass):
    """The partitions' sets concatenated in phase order, each checked to hold exactly its own classes
    (class-major, real ids) with the image shape of phase 0, then the whole (``check_condensed``)."""
    import torch

    from data.condensed import check_condensed, load_condensed

    xs, ys = [], []
    for p in parts:
        x, y = load_condensed(p.file)
        shape = tuple(xs[0].shape[1:]) if xs else tuple(x.shape[1:])
        if tuple(x.shape[1:]) != shape:
            raise UserError(f"{p.file}: images are {tuple(x.shape[1:])}, phase 0 has {shape}; the partitions "
                            "must come from one dataset and --size")
        if xs and len(x) != len(xs[0]):
            raise UserError(f"{p.file} holds {len(x)} images, phase 0 holds {len(xs[0])}; the partitions must be "
                            "condensed with one --ipc")
        want = torch.tensor(p.classes).repeat_interleave(max(1, len(x) // len(p.classes)))
        if len(x) % len(p.classes) or not torch.equal(y, want):
            raise UserError(f"{p.file}: targets are not class-major blocks of the classes {p.classes[0]}..."
                            f"{p.classes[-1]} of phase {p.phase}; it is not a partition of --nclass_sub "
                            f"{len(p.classes)} (re-condense it with condense_reg_mp.py --phase {p.phase})")
        xs.append(x)
        ys.append(y)
    x, y = torch.cat(xs), torch.cat(ys)
    check_condensed(x, y, nclass, x.shape[1], x.shape[-1], path=f"the concatenation of {len(parts)} partitions")
    return x, y


def merge_parts(base, nclass_sub, nclass, niter=None, allow_mismatch=False, require_complete=True, log=print,
                strict=False, out=None, out_flag="--out"):
    """Merge the partitions ``<base>_{k}_phase{p}`` into ``out`` (default ``<base>_{k}_merged``; ``data.pt`` +
    ``manifest.json``) and return that folder. ``require_complete``: refuse a partition below its final
    iteration (unless ``allow_mismatch``, which then records it). Nothing is written when a check fails; the
    output folder is checked first (writable, not inside a partition; ``out_flag`` names the option that
    chooses it in messages)."""
    from data.condensed import save_condensed
    from utils.config import jsonable
    from utils.files import atomic_write_text, check_apart, check_output_dir

    out = out or merged_dir(base, nclass_sub)
    check_output_dir(out, "merged set folder", out_flag)
    parts = resolve_parts(base, nclass_sub, nclass, niter, allow_mismatch, strict)
    check_apart(out, out_flag, [(p.folder, f"partition {p.phase}") for p in parts])
    incomplete = [p for p in parts if p.complete is False]
    if require_complete and incomplete and not allow_mismatch:
        where = ", ".join(f"phase {p.phase} at iteration {p.iteration} of {p.final_iteration}" for p in incomplete)
        one = incomplete[0].phase if len(incomplete) == 1 else "P"
        raise UserError(f"unfinished partitions of {os.path.normpath(base)} ({where}); relaunch "
                        f"{_phases([p.phase for p in incomplete])} with `condense_reg_mp.py ... --nclass_sub "
                        f"{nclass_sub} --phase {one} --resume` (or pass --allow_mismatch True to merge them as "
                        "they are)")
    x, y = load_parts(parts, nclass)
    mismatch = {}
    if _iterations_differ(parts):
        mismatch["iterations"] = {str(p.phase): p.iteration for p in parts}
    diff = _setting_differences(parts)
    if diff:
        mismatch["settings"] = {k: {str(ph): v for ph, v in by.items()} for k, by in diff.items()}
    if incomplete:
        mismatch["incomplete"] = [p.phase for p in incomplete]
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "base": os.path.abspath(base), "nclass": nclass, "nclass_sub": nclass_sub,
        "data": MERGED_DATA, "images": len(x), "ipc": len(x) // nclass, "image_shape": list(x.shape[1:]),
        "parts": [{"phase": p.phase, "classes": [p.classes[0], p.classes[-1]], "folder": os.path.abspath(p.folder),
                   "file": p.name, "iteration": p.iteration, "final_iteration": p.final_iteration,
                   "complete": p.complete} for p in parts],
        "settings": _common_settings(parts),
        "allow_mismatch": bool(allow_mismatch), "require_complete": bool(require_complete),
        "mismatch": mismatch,
    }
    # a stale manifest must never describe a new data.pt: drop it first, write it last
    if os.path.exists(os.path.join(out, MANIFEST)):
        os.unlink(os.path.join(out, MANIFEST))
    save_condensed(os.path.join(out, MERGED_DATA), x, y)
    atomic_write_text(os.path.join(out, MANIFEST), json.dumps(jsonable(manifest), indent=1) + "\n")
    note = f"; accepted mismatches: {', '.join(mismatch)}" if mismatch else ""
    log(f"merged {len(parts)} partitions of {nclass_sub} classes ({describe_parts(parts)}) into {out}: "
        f"{len(x)} images of {nclass} classes{note}")
    return out


# ------------------------------------------------------------------------------------------------
# command line


def get_args_parser():
    from cli.arguments import str2bool
    from utils.ranges import ranged

    parser = argparse.ArgumentParser(
        prog="python -m data.partitions",
        description="Merge the class partitions <base>_{k}_phase{p} of condense_reg_mp.py into <base>_{k}_merged "
                    "(data.pt, readable by test.py --test_data_dir, and manifest.json) (docs/algorithms.md#class-partitioned-condensation)")
    parser.add_argument("base", help="the partitions' common folder name, without _{k}_phase{p}")
    a = ranged(parser.add_argument)
    a("--nclass_sub", type=int, valid=">= 1", required=True, help="classes per partition (k)")
    a("--nclass", type=int, valid=">= 1", required=True, help="classes of the dataset")
    a("--niter", type=int, valid=">= 0", default=None,
                        help="merge every partition's data_{niter}.pt (default: its data.pt, else its latest "
                             "data_{it}.pt)")
    a("--out", default=None, help="folder of the merged set (default <base>_{k}_merged)")
    parser.add_argument("--allow_mismatch", nargs="?", const=True, default=False, type=str2bool,
                        help="accept partitions of different iterations or settings, or unfinished ones "
                             "(recorded in the manifest)")
    return parser


def main(args):
    return merge_parts(args.base, args.nclass_sub, args.nclass, args.niter, args.allow_mismatch,
                       strict=args.niter is not None, out=args.out)


if __name__ == "__main__":
    from cli.arguments import cli

    cli(main, get_args_parser)
