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


_YAML_FIX = "restore the run's args.yaml, or delete it to skip the settings check"
# the args.yaml fields the merge reads itself (the partition layout and the final iteration), checked when present
_LAYOUT = (("dataset", str, {}), ("nclass", int, dict(lo=1)), ("nclass_sub", int, dict(lo=1)),
           ("phase", int, dict(lo=0)), ("niter", int, dict(lo=0)), ("inner_loop", int, dict(lo=1)))


def _read_args(folder):
    """The checked ``args.yaml`` of a partition folder (``Fields``), or None without one: the one reader of a part's
    settings. A damaged file, or a layout field (``_LAYOUT``) of the wrong type or range, is a one-line
    ``UserError`` naming the file and the field."""
    from utils.fields import Fields
    from utils.files import load_yaml_mapping

    path = os.path.join(folder, "args.yaml")
    if not os.path.exists(path):
        return None
    rec = Fields(load_yaml_mapping(path, "partition settings", _YAML_FIX), path, _YAML_FIX)
    for key, types, checks in _LAYOUT:
        rec.get(key, types, default=None, **checks)
    return rec


def _read_settings(rec):
    """(settings, final iteration) from a part's checked ``args.yaml`` (``_read_args``), or (None, None) without
    one."""
    from cli.options import NUMBER_KEYS

    if rec is None:
        return None, None
    saved = rec.doc
    settings = {k: saved[k] for k in NUMBER_KEYS if k != "phase" and k in saved}
    final = None
    if saved.get("niter") is not None and saved.get("inner_loop") is not None:
        final = saved["niter"] * 100 // saved["inner_loop"]  # the loop's n_iter (MDC reference condense_reg.py,
        # condense; docs/algorithms.md#the-condensation-loop)
    return settings, final


def _phase_folders(base, k):
    """{phase: folder} of every ``<base>_{k}_phase{p}`` folder on disk (any p)."""
    import glob

    out = {}
    for f in glob.glob(glob.escape(f"{base}_{k}_phase") + "*"):
        m = re.fullmatch(r"phase(\d+)", f[len(f"{base}_{k}_"):])
        if m and os.path.isdir(f):
            out[int(m.group(1))] = f
    return dict(sorted(out.items()))


def _differs(rec, problem, key):
    """A layout field of a part's args.yaml that contradicts this command: the advice is the problem's own (the
    file is fine; ``Fields.fail`` would add the advice for a damaged file)."""
    raise UserError(f"{rec.where(key)} {problem}")


def _check_layout(base, k, nclass, expect, nclass_flag):
    """The settings that decide the partitions, compared with the parts' own files before anything else: every
    ``<base>_{k}_phase{p}``'s ``args.yaml`` must say ``nclass_sub`` k, ``phase`` p and the ``nclass`` (and
    ``expect``: {setting: (value, the flag that sets it)}) of this command; without args.yaml, no phase folder may
    lie beyond ``nclass // k`` partitions. Returns {phase: checked args.yaml or None}."""
    found = _phase_folders(base, k)
    args = {p: _read_args(f) for p, f in found.items()}
    for p, rec in args.items():
        if rec is None:
            continue
        saved = rec.doc
        if saved.get("nclass_sub") not in (None, k):
            _differs(rec, f"is {saved['nclass_sub']}, but the folder {found[p]} is a partition of {k} classes: it was "
                     f"renamed or copied; rename it back to {base}_{saved['nclass_sub']}_phase{saved.get('phase', p)} "
                     "or condense this partition again", "nclass_sub")
        if saved.get("phase") not in (None, p):
            _differs(rec, f"is {saved['phase']}, but the folder {found[p]} is phase {p}: it was renamed or copied; "
                     f"rename it back to {base}_{k}_phase{saved['phase']} or condense phase {p} again", "phase")
        for key, (value, flag) in (expect or {}).items():
            if saved.get(key) is not None and saved[key] != value:
                _differs(rec, f"is {saved[key]!r}, not the {value!r} of this command: the partitions of {base} were "
                         f"condensed with other settings; pass {flag} {saved[key]}", key)
        if saved.get("nclass") not in (None, nclass):
            n = saved["nclass"]
            of = f" of {saved['dataset']}" if saved.get("dataset") else ""
            why = (f"the partitions {n // k}..{nclass // k - 1} it would need cannot exist" if nclass > n else
                   "it would merge only some of them")
            _differs(rec, f"is {n}: the partitions of {base} split the {n} classes{of} into blocks of {k}, not the "
                     f"{nclass} classes of this command ({why}); pass {nclass_flag} {n}", "nclass")
    beyond = [p for p in found if nclass % k == 0 and p >= nclass // k]
    if beyond:
        n = (max(beyond) + 1) * k
        raise UserError(f"{base} has {_phases(beyond)} of --nclass_sub {k} ({found[beyond[0]]}), beyond the "
                        f"{nclass // k} partitions of {nclass} classes: the partitions were condensed for at least {n} "
                        f"classes; pass {nclass_flag} {n} (or the number of classes they were condensed for)")
    return args


def _other_splits(base, k):
    """The ``--nclass_sub`` values other than ``k`` that ``<base>_{k'}_phase{p}`` folders on disk were made with."""
    import glob

    ks = set()
    for f in glob.glob(glob.escape(f"{base}_") + "*_phase*"):
        m = re.fullmatch(r"(\d+)_phase\d+", f[len(base) + 1:])
        if m and os.path.isdir(f) and int(m.group(1)) != k:
            ks.add(int(m.group(1)))
    return sorted(ks)


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


def resolve_parts(base, nclass_sub, nclass, niter=None, allow_mismatch=False, strict=False, expect=None,
                  nclass_flag="--nclass"):
    """The partitions ``<base>_{k}_phase{p}`` of a class-partitioned run and the file each contributes.

    First the settings that decide the partitions (``_check_layout``: ``nclass``, the folder's k and phase, and
    ``expect`` {setting: (value, flag)} of the calling command) are compared with the parts' ``args.yaml``
    (``nclass_flag``: the option that sets the number of classes in the calling command's advice). One
    ``UserError`` names every missing partition (or one without a data file). Unless ``allow_mismatch``:
    partitions whose ``args.yaml`` differ in a number-affecting setting are refused, then partitions at
    different iterations (the fix: finish the interrupted one with ``--resume``). ``strict``: ``niter`` was
    asked for, so every partition must hold ``data_{niter}.pt`` (``latest_data_file``). Returns a list of
    ``Part`` in phase order."""
    from data.condensed import data_iteration, latest_data_file
    from cli.arguments import check_nclass_sub

    base = os.path.normpath(base)
    saved = _check_layout(base, nclass_sub, nclass, expect, nclass_flag)
    check_nclass_sub(nclass_sub, nclass)
    folders = [part_folder(base, nclass_sub, p) for p in range(nclass // nclass_sub)]
    others = [] if saved else _other_splits(base, nclass_sub)
    if others:
        ks = " or ".join(map(str, others))
        raise UserError(f"{base} has no partition of --nclass_sub {nclass_sub} ({folders[0]} is missing) but has "
                        f"partitions of --nclass_sub {ks} ({base}_{others[0]}_phase0, ...); pass --nclass_sub "
                        f"{others[0]}" + (f" (or {', '.join(map(str, others[1:]))})" if len(others) > 1 else ""))
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
        settings, final = _read_settings(saved.get(p))
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


def part_fix(p):
    """The advice for a partition's damaged data file (this module's commands have no option that names it)."""
    return (f"restore it from a backup, or delete it and condense phase {p.phase} again with condense_reg_mp.py "
            "(it resumes from the partition's checkpoint.pt)")


def load_parts(parts, nclass):
    """The partitions' sets concatenated in phase order, each checked to hold exactly its own classes
    (class-major, real ids) with the image shape of phase 0, images and no NaN/Inf pixels, then the whole
    (``check_condensed``). Every message names the partition file and only this module's options."""
    import torch

    from data.condensed import check_condensed, load_condensed

    xs, ys = [], []
    for p in parts:
        x, y = load_condensed(p.file, fix=part_fix(p))
        if len(x) == 0:
            raise UserError(f"{p.file}: partition {p.phase} holds no images; {part_fix(p)}")
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise UserError(f"{p.file}: partition {p.phase} holds {bad} NaN/Inf pixel values (a diverged run); "
                            f"condense phase {p.phase} again with a lower `condense_reg_mp.py --lr_img`")
        shape = tuple(xs[0].shape[1:]) if xs else tuple(x.shape[1:])
        if tuple(x.shape[1:]) != shape:
            raise UserError(f"{p.file}: images are {tuple(x.shape[1:])}, phase 0 has {shape}; the partitions "
                            "must come from one dataset and `condense_reg_mp.py --size`")
        if xs and len(x) != len(xs[0]):
            raise UserError(f"{p.file} holds {len(x)} images, phase 0 holds {len(xs[0])}; the partitions must be "
                            f"condensed with one --ipc (condense phase {p.phase} again with `condense_reg_mp.py "
                            f"--ipc {len(xs[0]) // len(p.classes)}`)")
        want = torch.tensor(p.classes).repeat_interleave(max(1, len(x) // len(p.classes)))
        if len(x) % len(p.classes) or not torch.equal(y, want):
            raise UserError(f"{p.file}: targets are not class-major blocks of the classes {p.classes[0]}..."
                            f"{p.classes[-1]} of phase {p.phase}; it is not a partition of --nclass_sub "
                            f"{len(p.classes)} (re-condense it with `condense_reg_mp.py --phase {p.phase}`)")
        xs.append(x)
        ys.append(y)
    x, y = torch.cat(xs), torch.cat(ys)
    check_condensed(x, y, nclass, x.shape[1], x.shape[-1], path=f"the concatenation of {len(parts)} partitions")
    return x, y


def read_manifest(folder):
    """The checked ``manifest.json`` of a merged folder, or None without one: the one reader of the format
    ``merge_parts`` writes, field by field (format, version, sizes, the parts' phases, classes and iterations, each
    consistent with ``nclass`` and ``nclass_sub``). One-line ``UserError`` naming the file, the part and the field."""
    from utils.fields import Fields

    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return None
    fix = f"delete {path} (the merge writes it again), or choose another folder for the merged set"
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}: {str(e)[:60]}); {fix}") from None
    rec = Fields(doc, path, fix)
    rec.get("format", str, choices=(MANIFEST_FORMAT,))
    rec.get("version", int, choices=(MANIFEST_VERSION,))
    rec.get("base", str, nonempty=True)
    rec.get("data", str, choices=(MERGED_DATA,))
    nclass = rec.get("nclass", int, lo=1)
    k = rec.get("nclass_sub", int, lo=1, hi=nclass)
    ipc = rec.get("ipc", int, lo=0)
    rec.get("images", int, choices=(ipc * nclass,))
    shape = rec.items("image_shape", int, lo=1)
    if len(shape) != 3:
        rec.fail(f"has {len(shape)} entries, expected 3 (channels, height, width)", "image_shape")
    for key in ("allow_mismatch", "require_complete"):
        rec.get(key, bool)
    rec.get("settings", (dict, None))
    rec.get("mismatch", dict)
    parts = rec.each("parts")
    if nclass % k or len(parts) != nclass // k:
        rec.fail(f"has {len(parts)} parts, but nclass {nclass} / nclass_sub {k} makes {nclass / k:g}", "parts")
    for i, part in enumerate(parts):
        part.get("phase", int, choices=(i,))
        cls = part.items("classes", int)
        if cls != [i * k, (i + 1) * k - 1]:
            part.fail(f"is {cls}, expected [{i * k}, {(i + 1) * k - 1}] (the classes of phase {i})", "classes")
        part.get("folder", str, nonempty=True)
        part.get("file", str, nonempty=True)
        it = part.get("iteration", (int, None), lo=0)
        final = part.get("final_iteration", (int, None), lo=0)
        done = part.get("complete", (bool, None))
        if None not in (it, final, done) and done != (it >= final):
            part.fail(f"is {done}, but iteration {it} of {final} says {it >= final}", "complete")
    return doc


def merge_parts(base, nclass_sub, nclass, niter=None, allow_mismatch=False, require_complete=True, log=print,
                strict=False, out=None, out_flag="--out", expect=None, nclass_flag="--nclass"):
    """Merge the partitions ``<base>_{k}_phase{p}`` into ``out`` (default ``<base>_{k}_merged``; ``data.pt`` +
    ``manifest.json``) and return that folder. ``require_complete``: refuse a partition below its final
    iteration (unless ``allow_mismatch``, which then records it). Nothing is written when a check fails; the
    output folder is checked first (writable, not inside a partition; ``out_flag`` names the option that
    chooses it in messages); a folder holding the merged set (``manifest.json``, checked by ``read_manifest``) of other
    partitions is refused. ``expect``, ``nclass_flag``: see ``resolve_parts``."""
    from data.condensed import save_condensed
    from utils.config import jsonable
    from utils.files import atomic_write_text, check_apart, check_output_dir

    out = out or merged_dir(base, nclass_sub)
    check_output_dir(out, "merged set folder", out_flag)
    parts = resolve_parts(base, nclass_sub, nclass, niter, allow_mismatch, strict, expect, nclass_flag)
    old = read_manifest(out) if os.path.isdir(out) else None
    if old is not None and (old["base"] != os.path.abspath(base) or old["nclass_sub"] != nclass_sub):
        raise UserError(f"{out} holds the merged set of other partitions ({old['base']}, nclass_sub "
                        f"{old['nclass_sub']}): merging into it would replace that set; pass another {out_flag}")
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
    if old is not None:
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
