"""One table from the JSON files of benchmarks/gpu_suite.sh (condense_step*.json, eval_epoch.json).

    python benchmarks/suite_table.py OUT_DIR
"""
import json
import os
import statistics
import sys


def med(values):
    return statistics.median(values)


def rows(out):
    """(setting, path, median seconds, ratio vs default/fp32, note) rows of every JSON file present."""
    table, machine = [], None
    for name in ("condense_step", "condense_step_idc"):
        path = os.path.join(out, name + ".json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            d = json.load(f)
        machine = d["machine"]
        what = f"MLS {d['mls']}" if d["mls"] else "no subset term"
        for step, label in (("class updates", "class updates, 1 inner step"), ("inner step", "inner step + net update")):
            t = d["times"][step]
            base = med(t["default"])
            for p, v in t.items():
                note = f"|Δ|/step {d['agreement'][p]:.0e}"
                if step == "inner step":
                    note += f"; full preset {d['full_preset_seconds'][p] / 3600:.1f} h"
                table.append((f"{label} ({what})", p, med(v), base / med(v), note))
    path = os.path.join(out, "eval_epoch.json")
    if os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        machine = machine or d["machine"]
        k = d["epochs_per_rep"]
        base = med(d["train"]["fp32"]) / k
        for p, v in d["train"].items():
            table.append((f"evaluation epoch, {d['n']} images", p, med(v) / k, base / (med(v) / k), ""))
        base = med(d["validation"]["fp32"])
        for p, v in d["validation"].items():
            table.append((f"validation, {d.get('val_n', 10000)} images", p, med(v), base / med(v),
                          f"protocol fp32 ≈ {d['protocol_seconds_fp32']:.0f} s" if p == "fp32" else ""))
    return machine, table


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        sys.exit("usage: python benchmarks/suite_table.py OUT_DIR (the folder benchmarks/gpu_suite.sh wrote)")
    machine, table = rows(argv[0])
    if not table:
        sys.exit(f"error: no benchmark JSON in {argv[0]}; run benchmarks/gpu_suite.sh first")
    print(f"{machine}\n")
    print("| setting | path | median s | speed vs default (fp32) | note |\n|---|---|---|---|---|")
    for setting, path, sec, ratio, note in table:
        print(f"| {setting} | {path} | {sec:.4g} | {ratio:.2f}× | {note} |")


if __name__ == "__main__":
    main()
