"""Tables (and an optional plot) from ``test.py`` JSON records: accuracy of every IPC-x prefix.

    python -m evaluation.report "Baseline C=raid/main_job/baseline_c/test_results.json" \
                           "MDC=raid/main_job/mdc/test_results.json" --plot prefix_accuracy.png

Each argument is ``LABEL=PATH``; the records of ``--test_type cx_cy`` (and whole-set ``other``)
are grouped by IPC-y. The newest record wins when a prefix was evaluated twice.
"""
import argparse
import json
import sys


def prefix_table(path):
    """{ipcy: (best mean, best std, last mean, epochs)} from one results file."""
    with open(path) as f:
        records = json.load(f)
    out = {}
    for r in records:
        a = r["args"]
        y = a["ipcy"] if r["test_type"] == "cx_cy" else a["ipc"]
        res = next(iter(r["results"].values()))
        out[y] = (res["best"]["mean"], res["best"]["std"], res["last"]["mean"], a["epochs"])
    return out


def format_table(tables):
    labels = list(tables)
    ipcs = sorted({y for t in tables.values() for y in t})
    head = "| IPC | " + " | ".join(f"{lab} (best)" for lab in labels) + " |"
    lines = [head, "|" + "---|" * (len(labels) + 1)]
    for y in ipcs:
        cells = []
        for lab in labels:
            v = tables[lab].get(y)
            cells.append("–" if v is None else f"{v[0]:.2f} ± {v[1]:.2f}")
        lines.append(f"| IPC-{y} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(tables, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written")
        return False
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for lab, t in tables.items():
        ys = sorted(t)
        ax.plot(ys, [t[y][0] for y in ys], marker="o", label=lab)
    ax.set_xticks(sorted({y for t in tables.values() for y in t}))  # whole IPCs only
    ax.set_xlabel("IPC (prefix of the condensed set)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")
    return True


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=path/to/test_results.json")
    p.add_argument("--plot", default="")
    return p


def main(argv=None):
    a = get_args_parser().parse_args(argv)
    tables = {}
    for spec in a.runs:
        if "=" not in spec:
            print(f"error: expected LABEL=PATH, got {spec!r}", file=sys.stderr)
            return 2
        lab, path = spec.split("=", 1)
        tables[lab] = prefix_table(path)
    print(format_table(tables))
    if a.plot:
        plot(tables, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
