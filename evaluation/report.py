"""Any paper table from evaluation records, in the paper's layout: Markdown on the screen, and with
``--out`` a Markdown file, a CSV and (where a curve says more) a plot.

    python -m evaluation.report mdc1 raid/mdc_table1/cifar10             # every record under the folder
    python -m evaluation.report mdc1 A=a.json B=b.json C=c.json MDC=mdc.json --out reports/
    python -m evaluation.report yoco1 raid/log_reproduce_1 raid/log_reproduce_2 raid/log_reproduce_3
    python -m evaluation.report mdc10 C=raid/mdc_table1/cifar10/C MDC=raid/mdc_table1/cifar10/MDC

Each argument is a results file of ``test.py`` (a JSON list of records), a folder searched for them
(every ``*.json`` that is such a list), or for ``mdc10`` a run folder or its ``metrics.jsonl``; a
``LABEL=`` prefix names the row of its records (MDC tables), else a record's ``--run_tag`` does, else the
file (``test_results.json``: its folder). Tables: see ``evaluation/tables.py``.
"""
import argparse
import csv
import io
import math
import os
import sys

from evaluation.records import (METRICS_FIX, RECORD_FIX, load_evaluations, net_protocol, read_metrics_file,
                                read_run_args)
from evaluation.tables import (MISSING, TABLES, Cell, compared_fields, differences, distinct, net_name, pivot,
                               shared_protocol, show, wall_seconds)
from utils.errors import UserError
from utils.files import atomic_write_text, check_output_dir, check_output_file


# ---------------------------------------------------------------------------------------------------
# reading
def _label(path, label):
    if label:
        return label
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(os.path.abspath(path))) if stem in ("test_results", "metrics") else stem


# --accuracy: which accuracy of a record the cells show (evaluation.records.ACCURACIES) and its name in the table
ACCURACY_KEYS = {"best": "best", "val": "best_on_val", "last": "last"}
ACCURACY_NAMES = {"best": "best-on-test", "val": "best-on-validation", "last": "last-epoch"}


def record_cells(ev, label, order, accuracy="best", where="a record"):
    """The cells of one checked ``test.py`` record (``evaluation.records.Evaluation``): one per evaluation
    network, holding its ``accuracy`` (``ACCURACY_KEYS``); ``where`` names the record in an error."""
    a = ev.args
    yoco = a["slct_ipc"] > 0
    if yoco:
        ipc, ipc_f = a["slct_ipc"], a["ipc"]
    elif ev.test_type in ("cx_cy", "baseline_b"):
        ipc, ipc_f = a["ipcy"], a["ipc"]
    else:
        ipc = a["ipc"] if a["ipc"] > 0 else round(ev.n_train / (a["nclass"] * a["factor"] ** 2))
        ipc_f = ipc
    name, key = label or a["run_tag"], ACCURACY_KEYS[accuracy]
    for net, res in ev.nets.items():
        if key not in res.values:
            raise UserError(f"{where} holds no {ACCURACY_NAMES[accuracy]} accuracy for {net}: report another --accuracy"
                            + ("; or evaluate with test.py --val_per_class K, a held-out validation split"
                               if accuracy == "val" else ""))
    n = ev.protocol["repeats"] if ev.protocol else None
    return [Cell(label=name, dataset=a["dataset"], net=net, ipc=ipc, ipc_f=ipc_f, key=a["pruning_key"] if yoco else "",
                 condense_key=a["condense_key"], exp=a["reproduce_exp"] if yoco else "", runs=list(res.values[key]),
                 order=order, std=res.std.get(key), n=n, first_net=i == 0, protocol=net_protocol(ev.protocol, net))
            for i, (net, res) in enumerate(ev.nets.items())]


RESULTS_FIX = "pass the results files of test.py (or folders of them)"


def _records(path):
    """The checked records of a JSON file found in a folder, or None when it is not a list of test.py records. A
    file named as test.py names results files (``test_results*.json``) must be one: a damaged one is an error."""
    if os.path.basename(path).startswith("test_results"):
        return load_evaluations(path, f"repair or move it away, or {RESULTS_FIX}", RECORD_FIX)
    return load_evaluations(path, RESULTS_FIX, RECORD_FIX, found=True)


def metrics_cells(path, label, accuracy="best"):
    """The in-run evaluations (``"type": "eval"``) of a condensation run's ``metrics.jsonl``: their best accuracy,
    mean ± std over the run's ``repeat`` (args.yaml); a damaged file (or its run's ``args.yaml``) is a one-line error
    naming it (``evaluation.records`` checks every field)."""
    if accuracy != "best":
        raise UserError(f"{path}: in-run evaluations record the best-on-test accuracy with its std only; report "
                        "--accuracy best")
    folder = os.path.dirname(os.path.abspath(path))
    cfg_path = os.path.join(folder, "args.yaml")
    cfg = read_run_args(cfg_path, "restore the run's args.yaml or delete it") if os.path.exists(cfg_path) else {}
    n = cfg.get("repeat") if isinstance(cfg.get("repeat"), int) and not isinstance(cfg.get("repeat"), bool) else None
    return [Cell(label=label or os.path.basename(folder), dataset=cfg.get("dataset", "?"), net=e["net"],
                 ipc=int(e["subset"][3:]), ipc_f=int(e["subset"][3:]), runs=[float(e["best"])], std=float(e["best_std"]),
                 n=n, step=e["it"])
            for e in read_metrics_file(path, METRICS_FIX) if e["type"] == "eval"]


def load_cells(table, specs, tag="", accuracy="best"):
    """Cells of every record in ``specs`` (``[LABEL=]path``) holding their ``accuracy``; with ``tag``, only records
    of that ``--run_tag``."""
    cells, order = [], 0
    for spec in specs:
        label, path = spec.split("=", 1) if "=" in spec else ("", spec)
        if not os.path.exists(path):
            raise UserError(f"{path} does not exist: pass results files or folders of the table's runs")
        if table.source == "metrics":
            files = [path] if os.path.isfile(path) else sorted(
                os.path.join(d, "metrics.jsonl") for d, _, fs in os.walk(path) if "metrics.jsonl" in fs)
            for f in files:
                cells += metrics_cells(f, label, accuracy)
            continue
        if os.path.isfile(path):
            found = [(path, load_evaluations(path, RESULTS_FIX, RECORD_FIX))]
        else:
            found = [(f, _records(f)) for f in sorted(os.path.join(d, f) for d, _, fs in os.walk(path)
                                                      for f in fs if f.endswith(".json"))]
        for f, records in found:
            for i, ev in enumerate(records or []):
                if tag and ev.args["run_tag"] != tag:
                    continue
                order += 1
                cells += record_cells(ev, _label(f, label) if label or not ev.args["run_tag"] else "", order, accuracy,
                                      f"{f}: record {i}")
    if not cells:
        raise UserError(f"no evaluation{' tagged ' + tag if tag else ''} found in {', '.join(specs)}: run the "
                        "table's script first (or pass the folders it wrote)")
    return cells


# ---------------------------------------------------------------------------------------------------
# writing
MARKS = ("†", "‡", "§", "¶", "‖")  # a cell whose protocol departs from the table's line (then †6, †7, ...)


def ci95(v):
    """The half-width of the 95 % t-interval of a mean (v: mean, population std, n); None for n < 2 or unknown."""
    mean, std, n = v
    if not n or n < 2:
        return None
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1) * std / math.sqrt(n - 1))  # sample std / sqrt(n) = population std / sqrt(n-1)


def fmt(v, ci=False, mark=""):
    """A cell: ``mean ± std (n=N)``, ``mean (n=1)`` for one repeat, ``(n=?)`` when the summary does not say;
    with ``ci`` the 95 % t-interval's half-width; the protocol mark last."""
    if v is None:
        return MISSING
    mean, std, n = v
    half = ci95(v) if ci else None
    text = f"{mean:.2f} (n=1)" if n == 1 else f"{mean:.2f} ± {std:.2f} (n={'?' if n is None else n}" + (
        f", 95% CI ± {half:.2f})" if half is not None else ")")
    return text + (f" {mark}" if mark else "")


def protocol_marks(p):
    """{(row, col): mark} and the notes (``mark text``) of the cells whose protocol departs from the table's
    shared one (evaluation.tables.differences), the same text sharing one mark."""
    notes, marks = {}, {}
    for rk, text in differences(p, shared_protocol(p)).items():
        i = notes.setdefault(text, len(notes))
        marks[rk] = MARKS[i] if i < len(MARKS) else f"†{i + 1}"
    return marks, [f"{MARKS[i] if i < len(MARKS) else f'†{i + 1}'} {text}" for text, i in notes.items()]


def grid(p, marks=None, ci=False):
    """Header and rows of strings: row-key columns, one column per table column, Avg. where the paper has it."""
    marks = marks or {}
    head = list(p.table.row_names) + [p.table.col_name(c) for c in p.cols] + (["Avg."] if p.table.avg else [])
    body = []
    for r in p.rows:
        line = [str(x) for x in r] + [fmt(p.values.get((r, c)), ci, marks.get((r, c), "")) for c in p.cols]
        if p.table.avg:
            a = p.avg(r)
            line.append(MISSING if a is None else f"{a:.2f}")
        body.append(line)
    keep = [i for i in range(len(p.table.row_names)) if len({b[i] for b in body}) > 1 or i == len(p.table.row_names) - 1]
    drop = set(range(len(p.table.row_names))) - set(keep)  # a Dataset / Network column with one value: in the title
    constant = [f"{head[i]}: {body[0][i]}" for i in sorted(drop)]
    head = [h for i, h in enumerate(head) if i not in drop]
    body = [[x for i, x in enumerate(b) if i not in drop] for b in body]
    return head, body, constant


def _joined(values, fmt_one=show, most=3):
    values = [fmt_one(v) for v in values]
    return " vs ".join(values[:most]) + (" vs …" if len(values) > most else "")


def protocol_line(p, accuracy):
    """The protocol the table's cells share (docs/evaluating.md#protocol-card-and-report): the most common value of
    every compared field, then the repeats, seeds, machine and torch version of all its records."""
    shared = shared_protocol(p)
    if not shared:
        return f"protocol unknown (records without a protocol card); accuracy {ACCURACY_NAMES[accuracy]}"
    g = lambda f: shared.get(f, "mixed")  # noqa: E731
    names = [k[0] for k in shared if isinstance(k, tuple) and k[1] == "depth"]  # per network (tables.NET_KEYS)
    nets = [f"{net_name(n)} (depth {show(shared[n, 'depth'])}, width {show(shared[n, 'width'])}, "
            f"{show(shared[n, 'norm_type'])} norm)" for n in names]
    ms = g("lr_milestones")
    aug = (f"DSA {show(g('dsa_strategy'))}" if g("dsa") is True else "no DSA") + " + " + (
        f"CutMix p {show(g('mix_p'))} β {show(g('beta'))}" if g("mixup") == "cut" else "no CutMix")
    val = _joined(distinct(p, lambda q: (q["val_per_class"], q["val_seed"])),
                  lambda v: f"validation {v[0]}/class (seed {v[1]})" if v[0] else "no validation split")
    repeats = distinct(p, lambda q: q["repeats"])
    seeds = _joined(distinct(p, lambda q: q["seeds"]), lambda v: "unseeded" if v is None else ", ".join(map(str, v)))
    machine = _joined(distinct(p, lambda q: (q["device"], q["device_name"])),
                      lambda v: f"{v[0]} ({v[1]})" if v[1] else v[0])
    parts = [", ".join(nets), f"{show(g('epochs'))} epochs",
             f"lr {show(g('lr'))} x{show(g('lr_gamma'))} at " + ("/".join(map(show, ms)) if isinstance(ms, list) else ms),
             f"momentum {show(g('momentum'))}", f"weight decay {show(g('weight_decay'))}", f"batch {show(g('batch_size'))}",
             aug, val, f"{_joined(repeats)} repeat{'s' if repeats != [1] else ''} (seeds {seeds})",
             f"accuracy {ACCURACY_NAMES[accuracy]}", show(g("precision")), machine,
             "torch " + _joined(distinct(p, lambda q: q["torch"])), f"wall time {wall_seconds(p) / 60:.1f} min"]
    return "protocol: " + ", ".join(parts)


def markdown(p, accuracy="best", ci=False):
    """The table, then the protocol line and a note per mark."""
    marks, notes = protocol_marks(p)
    head, body, constant = grid(p, marks, ci)
    acc = ACCURACY_NAMES[accuracy]
    note = f"{acc} accuracy (%), mean ± std over reproduce runs (n; each the mean of its repeats)" if p.table.yoco \
        else f"{acc} accuracy (%), mean ± std over repeats (n)"
    lines = [f"**{p.table.title}**" + (f" — {', '.join(constant)}" if constant else "") + f"; {note}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    for text in [protocol_line(p, accuracy)] + notes:
        lines += ["", text]
    return "\n".join(lines)


def csv_text(p, ci=False):
    """One line per cell: the row keys, the column, mean, std (empty for one value), n (empty: unknown), with ``ci``
    the 95 % interval's half-width, and how the cell's protocol departs from the table's (empty: it does not)."""
    notes = differences(p, shared_protocol(p))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(p.table.row_names) + ["column", "mean", "std", "n"] + (["ci95"] if ci else []) + ["protocol"])
    for r in p.rows:
        for c in p.cols:
            v = p.values.get((r, c))
            half = ci95(v) if ci and v else None
            cells = ["", "", 0] if v is None else [f"{v[0]:.4f}", "" if v[2] == 1 else f"{v[1]:.4f}",
                                                    "" if v[2] is None else v[2]]
            w.writerow(list(r) + [p.table.col_name(c)] + cells + (["" if half is None else f"{half:.4f}"] if ci else [])
                       + [notes.get((r, c), "")])
        if p.table.avg:
            a = p.avg(r)
            w.writerow(list(r) + ["Avg.", "" if a is None else f"{a:.4f}", "", ""] + ([""] if ci else []) + [""])
    return buf.getvalue()


def plot(p, path):
    """Accuracy vs IPC (one line per row) or vs condensation iteration (one line per method and IPC-x);
    False (and a line saying how to install it) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed, no plot written: pip install -r requirements-plots.txt")
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    varying = [i for i in range(len(p.table.row_names)) if len({r[i] for r in p.rows}) > 1] or [len(p.table.row_names) - 1]
    if p.table.plot == "ipc":
        for r in p.rows:
            xs = [c for c in p.cols if (r, c) in p.values]
            ax.errorbar(xs, [p.values[r, c][0] for c in xs], yerr=[p.values[r, c][1] for c in xs], marker="o",
                        capsize=2, label=" ".join(str(r[i]) for i in varying))
        ax.set_xticks(p.cols)  # whole IPCs only
        ax.set_xlabel("IPC (prefix of the condensed set)")
    else:
        for method in dict.fromkeys(r[:3] for r in p.rows):
            rows = [r for r in p.rows if r[:3] == method]
            for c in p.cols:
                pts = [(r[3], p.values[r, c][0]) for r in rows if (r, c) in p.values]
                if pts:
                    ax.plot(*zip(*pts), marker=".", label=f"{method[2]} IPC-{c}")
        ax.set_xlabel("condensation iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(p.table.title.split(":")[0])
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_outputs(a, table):
    """Before anything is read or printed: every file the report will write (``--out``'s {table}.md, .csv,
    .png and ``--plot``) can be written and is none of its input files. The report's own outputs are
    regenerated from the records, so an earlier report's files are replaced (the table scripts re-run it)."""
    inputs = {os.path.abspath(p) for spec in a.runs for p in [spec.split("=", 1)[-1]] if os.path.isfile(p)}
    outs = []
    if a.out:
        if os.path.abspath(a.out) in inputs:
            raise UserError(f"--out {a.out} is one of the report's input files; --out is a folder for the report: "
                            "pass a new one")
        check_output_dir(a.out, "report folder", "--out")
        outs += [(os.path.join(a.out, a.table + ext), "--out") for ext in (".md", ".csv") + ((".png",) if table.plot
                                                                                             else ())]
    if a.plot and table.plot:
        if os.path.isdir(a.plot):
            raise UserError(f"--plot {a.plot} is a folder; pass a file name to --plot (e.g. {a.table}.png in it)")
        if os.path.splitext(a.plot)[1].lower() not in PLOT_FORMATS:
            raise UserError(f"--plot {a.plot}: the plot is an image; end the file name in {', '.join(PLOT_FORMATS)}")
        outs.append((a.plot, "--plot"))
    for path, flag in outs:
        if os.path.abspath(path) in inputs:
            raise UserError(f"{flag} would overwrite {path}, one of the report's input files; pass another {flag}")
        check_output_file(path, "report file", flag)


def get_args_parser():
    p = argparse.ArgumentParser(prog="python -m evaluation.report", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=sorted(TABLES), help="which table (prefix: the IPC-x table of any runs)")
    p.add_argument("runs", nargs="+", help="[LABEL=]results file, folder of results, or (mdc10) run folder")
    p.add_argument("--tag", default="", help="only the records of this --run_tag (a table's evaluations)")
    p.add_argument("--out", default="", help="also write {table}.md, {table}.csv and {table}.png into this folder")
    p.add_argument("--plot", default="", help="write the plot to this file")
    p.add_argument("--accuracy", default="best", choices=sorted(ACCURACY_KEYS),
                   help="which accuracy the cells show: best (on the test set, the papers'), val (the test accuracy at "
                        "the epoch best on held-out validation; records of test.py --val_per_class) or last (the final "
                        "epoch)")
    p.add_argument("--ci95", action="store_true", help="add the 95%% t-interval's half-width to every cell")
    p.add_argument("--allow_mixed_protocols", action="store_true",
                   help="pool records of different protocols into one cell (marked) instead of refusing")
    return p


def main(argv=None):
    a = get_args_parser().parse_args(argv)
    try:
        table = TABLES[a.table]
        check_outputs(a, table)
        p = pivot(table, load_cells(table, a.runs, a.tag, a.accuracy), a.allow_mixed_protocols,
                  compared_fields(a.accuracy))
        md = markdown(p, a.accuracy, a.ci95)
        print(md)
        plots = [a.plot] if a.plot else []
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            atomic_write_text(os.path.join(a.out, f"{a.table}.md"), md + "\n")
            atomic_write_text(os.path.join(a.out, f"{a.table}.csv"), csv_text(p, a.ci95))
            print(f"written: {os.path.join(a.out, a.table)}.md, .csv")
            if table.plot:
                plots.append(os.path.join(a.out, f"{a.table}.png"))
        for path in plots if table.plot else []:
            if plot(p, path):
                print(f"plot written to {path}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
