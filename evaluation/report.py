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
import os
import sys

from evaluation.records import METRICS_FIX, RECORD_FIX, load_evaluations, read_metrics_file, read_run_args
from evaluation.tables import MISSING, TABLES, Cell, pivot
from utils.errors import UserError
from utils.files import atomic_write_text, check_output_dir, check_output_file


# ---------------------------------------------------------------------------------------------------
# reading
def _label(path, label):
    if label:
        return label
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(os.path.abspath(path))) if stem in ("test_results", "metrics") else stem


def record_cells(ev, label, order):
    """The cells of one checked ``test.py`` record (``evaluation.records.Evaluation``): one per evaluation
    network."""
    a = ev.args
    yoco = a["slct_ipc"] > 0
    if yoco:
        ipc, ipc_f = a["slct_ipc"], a["ipc"]
    elif ev.test_type in ("cx_cy", "baseline_b"):
        ipc, ipc_f = a["ipcy"], a["ipc"]
    else:
        ipc = a["ipc"] if a["ipc"] > 0 else round(ev.n_train / (a["nclass"] * a["factor"] ** 2))
        ipc_f = ipc
    name = label or a["run_tag"]
    return [Cell(label=name, dataset=a["dataset"], net=net, ipc=ipc, ipc_f=ipc_f, key=a["pruning_key"] if yoco else "",
                 condense_key=a["condense_key"], exp=a["reproduce_exp"] if yoco else "", runs=list(res.runs),
                 order=order, std=res.std, first_net=i == 0)
            for i, (net, res) in enumerate(ev.nets.items())]


RESULTS_FIX = "pass the results files of test.py (or folders of them)"


def _records(path):
    """The checked records of a JSON file found in a folder, or None when it is not a list of test.py records. A
    file named as test.py names results files (``test_results*.json``) must be one: a damaged one is an error."""
    if os.path.basename(path).startswith("test_results"):
        return load_evaluations(path, f"repair or move it away, or {RESULTS_FIX}", RECORD_FIX)
    return load_evaluations(path, RESULTS_FIX, RECORD_FIX, found=True)


def metrics_cells(path, label):
    """The in-run evaluations (``"type": "eval"``) of a condensation run's ``metrics.jsonl``; a damaged file
    (or its run's ``args.yaml``) is a one-line error naming it (``evaluation.records`` checks every field)."""
    folder = os.path.dirname(os.path.abspath(path))
    cfg_path = os.path.join(folder, "args.yaml")
    dataset = "?"
    if os.path.exists(cfg_path):
        dataset = read_run_args(cfg_path, "restore the run's args.yaml or delete it").get("dataset", "?")
    return [Cell(label=label or os.path.basename(folder), dataset=dataset, net=e["net"], ipc=int(e["subset"][3:]),
                 ipc_f=int(e["subset"][3:]), runs=[float(e["best"])], std=float(e["best_std"]), step=e["it"])
            for e in read_metrics_file(path, METRICS_FIX) if e["type"] == "eval"]


def load_cells(table, specs, tag=""):
    """Cells of every record in ``specs`` (``[LABEL=]path``); with ``tag``, only records of that ``--run_tag``."""
    cells, order = [], 0
    for spec in specs:
        label, path = spec.split("=", 1) if "=" in spec else ("", spec)
        if not os.path.exists(path):
            raise UserError(f"{path} does not exist: pass results files or folders of the table's runs")
        if table.source == "metrics":
            files = [path] if os.path.isfile(path) else sorted(
                os.path.join(d, "metrics.jsonl") for d, _, fs in os.walk(path) if "metrics.jsonl" in fs)
            for f in files:
                cells += metrics_cells(f, label)
            continue
        if os.path.isfile(path):
            found = [(path, load_evaluations(path, RESULTS_FIX, RECORD_FIX))]
        else:
            found = [(f, _records(f)) for f in sorted(os.path.join(d, f) for d, _, fs in os.walk(path)
                                                      for f in fs if f.endswith(".json"))]
        for f, records in found:
            for ev in records or []:
                if tag and ev.args["run_tag"] != tag:
                    continue
                order += 1
                cells += record_cells(ev, _label(f, label) if label or not ev.args["run_tag"] else "", order)
    if not cells:
        raise UserError(f"no evaluation{' tagged ' + tag if tag else ''} found in {', '.join(specs)}: run the "
                        "table's script first (or pass the folders it wrote)")
    return cells


# ---------------------------------------------------------------------------------------------------
# writing
def fmt(v, spread=True, n=None):
    if v is None:
        return MISSING
    s = f"{v[0]:.2f} ± {v[1]:.2f}" if spread else f"{v:.2f}"
    return s + (f" (n={v[2]})" if n is not None and v[2] != n else "")


def grid(p):
    """Header and rows of strings: row-key columns, one column per table column, Avg. where the paper has it."""
    counts = [v[2] for v in p.values.values()]
    common = max(set(counts), key=counts.count) if counts else None  # shown only where a cell differs
    head = list(p.table.row_names) + [p.table.col_name(c) for c in p.cols] + (["Avg."] if p.table.avg else [])
    body = []
    for r in p.rows:
        line = [str(x) for x in r] + [fmt(p.values.get((r, c)), n=common if p.table.yoco else None) for c in p.cols]
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


def markdown(p):
    head, body, constant = grid(p)
    note = "mean ± std over reproduce runs (each the mean of its repeats)" if p.table.yoco else \
        "best accuracy (%), mean ± std over repeats"
    lines = [f"**{p.table.title}**" + (f" — {', '.join(constant)}" if constant else "") + f"; {note}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines)


def csv_text(p):
    """One line per cell: the row keys, the column, mean, std and the number of runs aggregated."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(p.table.row_names) + ["column", "mean", "std", "n"])
    for r in p.rows:
        for c in p.cols:
            v = p.values.get((r, c))
            w.writerow(list(r) + [p.table.col_name(c)] + (["", "", 0] if v is None else [f"{v[0]:.4f}", f"{v[1]:.4f}", v[2]]))
        if p.table.avg:
            a = p.avg(r)
            w.writerow(list(r) + ["Avg.", "" if a is None else f"{a:.4f}", "", ""])
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
    return p


def main(argv=None):
    a = get_args_parser().parse_args(argv)
    try:
        table = TABLES[a.table]
        check_outputs(a, table)
        p = pivot(table, load_cells(table, a.runs, a.tag))
        md = markdown(p)
        print(md)
        plots = [a.plot] if a.plot else []
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            atomic_write_text(os.path.join(a.out, f"{a.table}.md"), md + "\n")
            atomic_write_text(os.path.join(a.out, f"{a.table}.csv"), csv_text(p))
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
