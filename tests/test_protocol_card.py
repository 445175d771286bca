"""The protocol card of every record and the report's protocol line, marks, pooling refusal, accuracy choice and
spread (docs/evaluating.md#protocol-card-and-report): in process, on records made by ``make_record``."""
import csv
import io
import json

import pytest

from helpers import refused, run_main

TEST_ARGV = ["-d", "cifar10", "--ipc", "3", "--test_data_dir", "s", "--epochs", "6", "--repeat", "2", "--dsa", "True",
             "--mix_p", "0.5"]


def args_of(*extra, **settings):
    """test.py's finalized arguments (no run), with ``settings`` set afterwards."""
    from cli.arguments import parse_args
    from test import get_args_parser

    args = parse_args(get_args_parser(), [*TEST_ARGV, *extra])
    for k, v in settings.items():
        setattr(args, k, v)
    return args


def results(bests=(50.0, 52.0), nets=("convnet",), val=None):
    """test.py's results: per network its repeats (best, last = best - 1, with ``val``: best_on_val = best - val)
    and summaries."""
    def summary(xs):
        m = sum(xs) / len(xs)
        return {"mean": m, "std": (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5}

    out = {}
    for net in nets:
        runs = [{"best": b, "last": b - 1, "curve": [[3, b - 2], [6, b - 1]], "seconds": 1.0} for b in bests]
        if val is not None:
            for r in runs:
                r.update(best_on_val=r["best"] - val, val_curve=[[3, 30.0], [6, 31.0]])
        out[net] = {"runs": runs, **{k: summary([r[k] for r in runs]) for k in ("best", "last")}}
        if val is not None:
            out[net]["best_on_val"] = summary([r["best_on_val"] for r in runs])
    return out


def record(args=None, res=None, wall=4.0, **settings):
    import torch

    from evaluation.records import make_record

    args = args or args_of(**settings)
    res = res or results(bests=tuple(50.0 + 2 * i for i in range(args.repeat)))
    return make_record(args, torch.device("cpu"), "set", 40, res, wall)


def prefix(y, **settings):
    """The IPC-y prefix evaluation of an IPC-3 set (an MDC table cell)."""
    return record(args_of("--test_type", "cx_cy", "--ipcy", str(y), **settings))


def yoco_run(exp, bests, **settings):
    """One reproduce run of a YOCO Table 1 cell (IPC 3 -> 1, the YOCO key)."""
    args = args_of("--slct_ipc", "1", "--pruning_key", "yoco", "--reproduce_exp", exp, **settings)
    return record(args, results(bests=bests))


def write(folder, name, records):
    (folder / name).write_text(json.dumps(records))
    return name


def report(folder, *argv):
    p = run_main("evaluation.report", *argv, cwd=folder)
    assert p.returncode == 0, p.stderr
    return p.stdout


def cells(md, row):
    """The cells of the Markdown table's row ``row`` (its first column)."""
    for line in md.splitlines():
        parts = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and parts[0] == row:
            return parts[1:]
    raise AssertionError(f"no row {row} in {md}")


def test_the_card_is_written_and_read_back(tmp_path):
    import torch

    from evaluation.records import append_record, load_evaluations

    rec = record()
    card = rec["protocol"]
    assert card["nets"] == {"convnet": {"depth": 3, "width": 1.0, "norm_type": "instance", "seeds": [123, 124]}}
    assert {k: card[k] for k in ("epochs", "lr", "lr_gamma", "lr_milestones", "momentum", "weight_decay", "batch_size",
                                 "dsa", "mixup", "mix_p", "beta", "repeats", "val_per_class", "val_seed",
                                 "accuracies", "precision", "device", "torch", "wall_seconds")} == dict(
        epochs=6, lr=0.01, lr_gamma=0.2, lr_milestones=[4, 5], momentum=0.9, weight_decay=5e-4, batch_size=64, dsa=True,
        mixup="cut", mix_p=0.5, beta=1.0, repeats=2, val_per_class=0, val_seed=None, accuracies=["best", "last"],
        precision="fp32", device="cpu", torch=torch.__version__, wall_seconds=4.0)
    assert card["dsa_strategy"] == args_of().dsa_strategy and card["device_name"]
    # without CutMix or DSA their parameters have no effect: null
    plain = record(args_of("--mixup", "vanilla", "--dsa", "False"))["protocol"]
    assert (plain["mix_p"], plain["beta"], plain["dsa_strategy"]) == (None, None, None)
    val = record(args_of(val_per_class=2, val_seed=7), results(val=1.0))["protocol"]
    assert val["accuracies"] == ["best", "best_on_val", "last"] and (val["val_per_class"], val["val_seed"]) == (2, 7)
    path = str(tmp_path / "r.json")
    assert append_record(path, rec)
    (ev,) = load_evaluations(path, "fix")
    assert ev.protocol["nets"] == card["nets"] and ev.protocol["epochs"] == 6


def test_a_record_without_a_card_reads_as_protocol_unknown(tmp_path):
    from evaluation.records import load_evaluations

    old = record()
    del old["protocol"]
    name = write(tmp_path, "old.json", [old])
    (ev,) = load_evaluations(str(tmp_path / name), "fix")
    assert ev.protocol is None
    out = report(tmp_path, "prefix", name)
    assert "\nprotocol unknown (records without a protocol card); accuracy best-on-test" in out
    assert "51.00 ± 1.00 (n=2)" in out and "†" not in out


def test_the_protocol_line_under_the_table(tmp_path):
    name = write(tmp_path, "C.json", [prefix(y) for y in (1, 2, 3)])
    out = report(tmp_path, "mdc1", f"C={name}")
    table, line = out.split("\n\nprotocol: ")
    assert cells(table, "C") == ["51.00 ± 1.00 (n=2)"] * 3 + ["51.00"]
    assert line.startswith("ConvNet (depth 3, width 1, instance norm), 6 epochs, lr 0.01 x0.2 at 4/5, momentum 0.9, "
                           f"weight decay 0.0005, batch 64, DSA {args_of().dsa_strategy} + CutMix p 0.5 β 1, "
                           "no validation split, 2 repeats (seeds 123, 124), accuracy best-on-test, fp32, cpu (")
    assert "torch " in line and line.rstrip().endswith("wall time 0.2 min")  # 3 records of 4 s
    assert "best-on-test accuracy (%), mean ± std over repeats (n)" in table


def test_a_cell_of_another_protocol_is_marked_with_a_note(tmp_path):
    recs = [prefix(1), prefix(2), prefix(3, epochs=12)]
    recs[1]["protocol"]["torch"] = "0.0-other"  # shown in the line, never marked
    name = write(tmp_path, "C.json", recs)
    out = report(tmp_path, "mdc1", f"C={name}", "--out", "rep")
    assert cells(out, "C") == ["51.00 ± 1.00 (n=2)", "51.00 ± 1.00 (n=2)", "51.00 ± 1.00 (n=2) †", "51.00"]
    assert "\n\n† epochs 12, lr_milestones [8, 10]" in out and ", 6 epochs," in out
    assert " vs 0.0-other" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "rep" / "mdc1.csv").read_text())))
    assert [r["protocol"] for r in rows if r["column"].startswith("IPC")] == ["", "", "epochs 12, lr_milestones [8, 10]"]


def test_a_cell_pooling_protocols_is_refused_unless_allowed(tmp_path):
    name = write(tmp_path, "r.json", [yoco_run("reproduce_1", (40.0, 42.0)), yoco_run("reproduce_2", (44.0, 46.0),
                                                                                        epochs=12)])
    line = refused(tmp_path, "evaluation.report", ["yoco1", name], "would pool 2 records of different protocols",
                   runner=run_main)
    assert "epochs 6 vs 12" in line and "lr_milestones [4, 5] vs [8, 10]" in line and "--allow_mixed_protocols" in line
    out = report(tmp_path, "yoco1", name, "--allow_mixed_protocols")
    assert cells(out, "LBPE + balanced (YOCO)") == ["43.00 ± 2.00 (n=2) †"]
    assert "\n\n† pools records of different protocols: epochs 6 vs 12, lr_milestones [4, 5] vs [8, 10]" in out


def test_pooling_a_known_and_an_unknown_protocol_is_mixed(tmp_path):
    old = yoco_run("reproduce_2", (44.0, 46.0))
    del old["protocol"]
    name = write(tmp_path, "r.json", [yoco_run("reproduce_1", (40.0, 42.0)), old])
    refused(tmp_path, "evaluation.report", ["yoco1", name], "(protocol unknown vs card)", runner=run_main)
    assert "† pools records of different protocols: protocol unknown vs card" in report(
        tmp_path, "yoco1", name, "--allow_mixed_protocols")


def test_machine_and_torch_differences_pool(tmp_path):
    """Device name, torch version, wall time, seeds and the number of repeats never refuse a pooled cell."""
    one, two = yoco_run("reproduce_1", (40.0, 42.0)), yoco_run("reproduce_2", (44.0, 46.0), seed=7)
    two["protocol"].update(device_name="another CPU", torch="0.0-other", wall_seconds=60.0)
    out = report(tmp_path, "yoco1", write(tmp_path, "r.json", [one, two]))
    assert cells(out, "LBPE + balanced (YOCO)") == ["43.00 ± 2.00 (n=2)"]
    assert "seeds 123, 124 vs 7, 8" in out and "vs cpu (another CPU)" in out and "torch " in out


def test_accuracy_val_and_last(tmp_path):
    val = write(tmp_path, "val.json", [record(args_of(val_per_class=2), results(val=10.0))])
    out = report(tmp_path, "prefix", val, "--accuracy", "val")
    assert "41.00 ± 1.00 (n=2)" in out and "best-on-validation accuracy (%)" in out
    assert ", validation 2/class (seed 0)," in out and "accuracy best-on-validation" in out
    assert "50.00 ± 1.00 (n=2)" in report(tmp_path, "prefix", val, "--accuracy", "last")
    plain = write(tmp_path, "plain.json", [record()])
    p = run_main("evaluation.report", "prefix", plain, "--accuracy", "val", cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and p.stdout == ""
    assert lines[0].startswith("error: plain.json: record 0 holds no best-on-validation accuracy for convnet")
    assert "--val_per_class" in lines[0]


def test_one_repeat_says_so_and_ci95(tmp_path):
    one = write(tmp_path, "one.json", [record(args_of("--repeat", "1"))])
    out = report(tmp_path, "prefix", one)
    assert "50.00 (n=1)" in out and "± 0.00" not in out and ", 1 repeat (seeds 123)," in out
    two = write(tmp_path, "two.json", [record()])
    out = report(tmp_path, "prefix", two, "--ci95", "--out", "rep")
    assert "51.00 ± 1.00 (n=2, 95% CI ± 12.71)" in out  # t(0.975, 1) = 12.706 x the sample std 1.41 / sqrt(2)
    (row,) = [r for r in csv.DictReader(io.StringIO((tmp_path / "rep" / "prefix.csv").read_text()))
              if r["column"] == "IPC-3"]
    assert (row["mean"], row["std"], row["n"], row["ci95"]) == ("51.0000", "1.0000", "2", "12.7062")
    assert "50.00 (n=1)" in report(tmp_path, "prefix", one, "--ci95")  # no interval of one value


@pytest.mark.parametrize("argv,needle", [(["--accuracy", "val"], "best-on-test accuracy with its std only"),
                                         (["--accuracy", "last"], "report --accuracy best")])
def test_in_run_evaluations_have_the_best_accuracy_only(tmp_path, argv, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"type": "eval", "it": 1, "subset": "ipc1", "net": "convnet",
                                                   "best": 20.0, "best_std": 0.5, "last": 19.0}) + "\n")
    (run / "args.yaml").write_text("dataset: cifar10\nrepeat: 3\n")
    assert "20.00 ± 0.50 (n=3)" in report(tmp_path, "mdc10", "run")
    refused(tmp_path, "evaluation.report", ["mdc10", "run", *argv], needle, runner=run_main)


def test_the_validation_split_is_compared_for_the_accuracy_it_picks(tmp_path):
    """Records that differ only in their held-out split pool for best/last (it changes no test accuracy), not for
    --accuracy val."""
    one = yoco_run("reproduce_1", (40.0, 42.0), val_per_class=2)
    two = yoco_run("reproduce_2", (44.0, 46.0), val_per_class=2, val_seed=1)
    for rec in (one, two):
        rec["results"] = results(bests=(40.0, 42.0), val=5.0)
    name = write(tmp_path, "r.json", [one, two])
    assert "(n=2)" in report(tmp_path, "yoco1", name) and "(seed 0) vs validation 2/class (seed 1)" in report(
        tmp_path, "yoco1", name)
    refused(tmp_path, "evaluation.report", ["yoco1", name, "--accuracy", "val"], "val_seed 0 vs 1", runner=run_main)
