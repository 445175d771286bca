"""The MLS trajectory and the freeze events of MDC condensation runs, from their ``metrics.jsonl``.

    python -m evaluation.mls_trace [LABEL=]RUN_FOLDER ... [--out FILE.md]

One Markdown row per run: the MLS chosen at each selection window (consecutive windows with the same
choice merged: ``1 (it 1–25)``) and the iterations during which a finished subset was frozen
(``IPC-1 (it 31–34)``), and how many windows chose each subset, read from the ``mls`` records and the per-iteration ``loss`` records (their
``frozen`` field; logged every max(1, n_iter // 50) iterations, so with more than 50 outer iterations
an interval's ends are known to that resolution). Global MLS only (``--adaptive_class_wise`` runs
list class 0's choices).
"""
import argparse
import os
import sys
from collections import Counter

from condensation.mls import first_of, read_frozen, read_mls_record
from evaluation.records import METRICS_FIX, read_metrics_file
from utils.errors import UserError


def _spans(pairs):
    """[(it, value)] → [(value, first it, last it)] merging consecutive equal values."""
    out = []
    for it, v in pairs:
        if out and out[-1][0] == v:
            out[-1][2] = it
        else:
            out.append([v, it, it])
    return out


def _its(a, b):
    return f"it {a}" if a == b else f"it {a}–{b}"


def trace(folder):
    """(MLS trajectory text, freeze events text) of one run folder."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        raise UserError(f"{path} does not exist: point mls_trace at a condensation run folder of condense_reg.py")
    recs = read_metrics_file(path, METRICS_FIX)
    # class 0's values, through the MLS registry's readers (condensation/mls)
    mls = [(m.it, first_of(m.mls)) for m in map(read_mls_record, (r for r in recs if r.get("type") == "mls"))]
    if not mls:
        raise UserError(f"{path} has no MLS records: the run was not an MDC run, one of condense_reg.py --adaptive_reg True")
    frozen = [(r["it"], first_of((read_frozen(r) or (False, [-1]))[1])) for r in recs if r.get("type") == "loss"]
    choices = ", ".join(f"{v} ({_its(a, b)})" for v, a, b in _spans(mls))
    events = [f"IPC-{v} ({_its(a, b)})" for v, a, b in _spans(frozen) if v is not None and v > 0]
    counts = ", ".join(f"IPC-{x}: {n}" for x, n in sorted(Counter(m for _, m in mls).items()))
    n_frozen = sum(1 for _, v in frozen if v is not None and v > 0)
    return choices, ", ".join(events) or "none", f"{counts}; frozen in {n_frozen} of {len(frozen)} logged iterations"


def markdown(runs):
    lines = ["| run | MLS at each selection window | frozen subsets | windows per MLS |", "|---|---|---|---|"]
    for label, folder in runs:
        lines.append("| " + " | ".join([label, *trace(folder)]) + " |")
    return "\n".join(lines) + "\n"


def get_args_parser():
    p = argparse.ArgumentParser(description="MLS trajectory and freeze events of MDC runs (metrics.jsonl)")
    p.add_argument("runs", nargs="+", help="[LABEL=]run folder")
    p.add_argument("--out", default="", help="also write the Markdown table to this file")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    runs = [(r.rsplit("=", 1) if "=" in r and not os.path.exists(r) else (os.path.basename(os.path.normpath(r)), r))
            for r in args.runs]
    try:
        md = markdown(runs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
