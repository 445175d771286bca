"""The report command on hand-made records with known numbers: every table layout, the Baseline B
column, every network, averages over repeats and reproduce runs, missing cells, CSV, plots, errors."""
import csv
import io
import json

import pytest

from evaluation.report import csv_text, load_cells, main, markdown
from evaluation.tables import TABLES, pivot


def rec(test_type, ipc, ipcy=-1, runs=(50.0,), nets=("convnet",), run_tag="", dataset="cifar10", **yoco):
    """A test.py record as evaluation/records.make_record writes it."""
    res = {n: {"runs": [{"best": b + i, "last": b - 1} for b in runs], "best": {"mean": 0, "std": 0}}
           for i, n in enumerate(nets)}  # network i scores i points more
    args = dict(ipc=ipc, ipcy=ipcy, dataset=dataset, nclass=10, factor=2, run_tag=run_tag, slct_ipc=0,
                pruning_key="yoco", condense_key="idc", reproduce_exp="reproduce_3")
    args.update(yoco)
    return {"test_type": test_type, "n_train": 40, "args": args, "results": res}


def write(path, records):
    path.write_text(json.dumps(records))
    return str(path)


def rows_of(md):
    """{(first two cells): [cells]} of a Markdown table."""
    out = {}
    for line in md.splitlines():
        if line.startswith("| ") and "---" not in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[tuple(cells[:2])] = cells
    return out


@pytest.fixture
def table1(tmp_path):
    """MDC Table 1 at N = 3 as the script writes it: A per IPC k, B from IPC-1 runs, C and MDC prefixes."""
    d = tmp_path / "t1"
    d.mkdir()
    write(d / "A.json", [rec("other", k, runs=(10.0 * k, 10.0 * k + 2)) for k in (1, 2, 3)])
    write(d / "B.json", [rec("baseline_b", 3, y, runs=(20.0 + y,)) for y in (1, 2, 3)])
    write(d / "C.json", [rec("cx_cy", 3, y, runs=(30.0 + y,), nets=("convnet", "resnet10_bn")) for y in (1, 2, 3)])
    write(d / "MDC.json", [rec("cx_cy", 3, y, runs=(40.0 + y,), run_tag="MDC") for y in (1, 2)])  # IPC-3 missing
    return d


def test_mdc_table1_rows_columns_and_b_column(table1, capsys):
    assert main(["mdc1", str(table1)]) == 0
    md = capsys.readouterr().out
    head = next(line for line in md.splitlines() if line.startswith("| Network"))
    assert head == "| Network | Method | IPC-1 | IPC-2 | IPC-3 | Avg. |"  # one dataset: named in the title
    assert "Dataset: CIFAR-10" in md
    rows = {tuple(r[:2]): r[2:] for r in rows_of(md).values()}
    assert rows["ConvNet", "A"] == ["11.00 ± 1.00 (n=2)", "21.00 ± 1.00 (n=2)", "31.00 ± 1.00 (n=2)", "21.00"]
    # Baseline B: every IPC-y its own column (the old report put all of them under IPC-3); one repeat: no "± 0.00"
    assert rows["ConvNet", "B"] == ["21.00 (n=1)", "22.00 (n=1)", "23.00 (n=1)", "22.00"]
    assert rows["ConvNet", "C"] == ["31.00 (n=1)", "32.00 (n=1)", "33.00 (n=1)", "32.00"]
    assert rows["ResNet-10-BN", "C"] == ["32.00 (n=1)", "33.00 (n=1)", "34.00 (n=1)", "33.00"]  # every network
    assert rows["ConvNet", "MDC"] == ["41.00 (n=1)", "42.00 (n=1)", "–", "–"]  # missing, never filled
    # records without a protocol card (made before test.py wrote one): said under the table, never refused
    assert "\nprotocol unknown (records without a protocol card); accuracy best-on-test" in md
    assert [k for k in rows if k[0] != "Network"] == [("ConvNet", m) for m in ("A", "B", "C", "MDC")] + [
        ("ResNet-10-BN", "C")]  # the paper's row order, grouped by network


def test_labels_newest_wins_and_csv(table1, tmp_path, capsys):
    again = write(tmp_path / "again.json", [rec("cx_cy", 3, 1, runs=(90.0, 92.0))])
    assert main(["mdc1", f"MDC={table1 / 'MDC.json'}", f"MDC={again}", "--out", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    md = (tmp_path / "rep" / "mdc1.md").read_text()
    assert "| MDC | 91.00 ± 1.00 (n=2) | 42.00 (n=1) |" in md  # the newer IPC-1 evaluation replaced the older one
    rows = list(csv.reader(io.StringIO((tmp_path / "rep" / "mdc1.csv").read_text())))
    assert rows[0] == ["Dataset", "Network", "Method", "column", "mean", "std", "n", "protocol"]
    assert ["CIFAR-10", "ConvNet", "MDC", "IPC-1", "91.0000", "1.0000", "2", ""] in rows
    assert ["CIFAR-10", "ConvNet", "MDC", "IPC-2", "42.0000", "", "1", ""] in rows  # one repeat: no std
    assert (tmp_path / "rep" / "mdc1.png").stat().st_size > 1000


def test_datasets_get_their_own_rows(tmp_path):
    write(tmp_path / "C.json", [rec("cx_cy", 2, y, runs=(30.0 + y,)) for y in (1, 2)]
          + [rec("cx_cy", 2, y, runs=(60.0 + y,), dataset="svhn") for y in (1, 2)])
    md = markdown(pivot(TABLES["mdc1"], load_cells(TABLES["mdc1"], [str(tmp_path)])))
    assert "| CIFAR-10 | C | 31.00 (n=1) | 32.00 (n=1) | 31.50 |" in md
    assert "| SVHN | C | 61.00 (n=1) | 62.00 (n=1) | 61.50 |" in md


def yoco(key, t, exp, acc, ipc=10, ck="idc", nets=("convnet",), tag="yoco_table1"):
    return rec("other", ipc, runs=(acc, acc + 2), nets=nets, run_tag=tag, slct_ipc=t, pruning_key=key,
               condense_key=ck, reproduce_exp=exp)


def test_yoco_table1_averages_reproduce_runs(tmp_path, capsys):
    for k, base in ((1, 10.0), (2, 14.0)):  # run means 11 and 15 -> 13 ± 2
        write(tmp_path / f"r{k}.json", [yoco("yoco", 1, f"reproduce_{k}", base), yoco("random", 1, f"reproduce_{k}", 5.0),
                                        yoco("yoco", 2, f"reproduce_{k}", base + 10),
                                        yoco("random", 1, f"reproduce_{k}", 7.0, ck="dream")])
    write(tmp_path / "r3.json", [yoco("yoco", 1, "reproduce_3", 12.0)])  # run mean 13 -> (11, 15, 13): 13 ± 1.63
    assert main(["yoco1", str(tmp_path)]) == 0
    rows = {k[0]: v for k, v in rows_of(capsys.readouterr().out).items()}
    assert rows["Method"][1:] == ["CIFAR-10 10→1", "CIFAR-10 10→2"]
    assert rows["LBPE + balanced (YOCO)"][1:] == ["13.00 ± 1.63 (n=3)", "23.00 ± 2.00 (n=2)"]  # n: reproduce runs
    assert rows["Random"][1:] == ["6.00 ± 0.00 (n=2)", "–"]
    assert rows["Random (DREAM)"][1:] == ["8.00 ± 0.00 (n=2)", "–"]
    assert list(rows)[1:] == ["Random", "Random (DREAM)", "LBPE + balanced (YOCO)"]


def test_yoco_tables_2_to_5(tmp_path):
    recs = [yoco(k, 1, "reproduce_1", 20.0, ck=ck, tag="t2") for ck in ("idc", "dream") for k in ("random", "yoco")]
    recs += [yoco("el2n", 1, "reproduce_1", 30.0, nets=("convnet", "resnet10_bn", "densenet"), tag="t3")]
    recs += [yoco(f"el2n{s}", t, "reproduce_1", 40.0 + t + (s == "_balance"), tag="t5")
             for t in (1, 2) for s in ("_imbalance", "_balance")]
    path = write(tmp_path / "r.json", recs)
    md2 = markdown(pivot(TABLES["yoco2"], load_cells(TABLES["yoco2"], [path], tag="t2")))
    md1 = markdown(pivot(TABLES["yoco1"], load_cells(TABLES["yoco1"], [path], tag="t3")))
    assert "| EL2N | 31.00 (n=1) |" in md1  # ConvNet-only table: the record's other networks are left out
    assert "| Method | IDC | DREAM |" in md2 and "| Random | 21.00 (n=1) | 21.00 (n=1) |" in md2
    md3 = markdown(pivot(TABLES["yoco3"], load_cells(TABLES["yoco3"], [path], tag="t3")))
    assert "| Method | ConvNet | ResNet-10-BN | DenseNet | Avg. |" in md3
    assert "| EL2N | 31.00 (n=1) | 32.00 (n=1) | 33.00 (n=1) | 32.00 |" in md3
    md5 = markdown(pivot(TABLES["yoco5"], load_cells(TABLES["yoco5"], [path], tag="t5")))
    assert "| →1 imbalanced | →1 balanced | →2 imbalanced | →2 balanced |" in md5
    assert "| EL2N | 42.00 (n=1) | 43.00 (n=1) | 43.00 (n=1) | 44.00 (n=1) |" in md5 and "Random" not in md5


def test_mdc_table10_from_metrics(tmp_path, capsys):
    for name, base in (("C", 30.0), ("MDC", 40.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "args.yaml").write_text("dataset: fashion\nipc: 2\n")
        lines = [{"type": "loss", "it": 1, "loss": 1.0}]
        lines += [{"type": "eval", "it": it, "subset": f"ipc{x}", "net": "convnet", "best": base + it / 100 + x,
                   "best_std": 0.5, "last": 0.0, "epochs": 3} for it in (100, 200) for x in (2, 1)]
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n{\"type\": \"ev")  # cut line
    assert main(["mdc10", str(tmp_path), "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "| Method | Iteration | IPC-1 | IPC-2 | Avg. |" in out
    # the in-run evaluations' mean ± std; their repeats are not recorded (n=?) when args.yaml does not say
    assert "| MDC | 200 | 43.00 ± 0.50 (n=?) | 44.00 ± 0.50 (n=?) | 43.50 |" in out and "| C | 100 |" in out
    assert (tmp_path / "p.png").exists()


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["mdc1", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["mdc1", str(tmp_path)]) == 2
    assert "no evaluation found" in capsys.readouterr().err
    assert main(["mdc1", write(tmp_path / "x.json", {"a": 1})]) == 2
    assert "not a results file" in capsys.readouterr().err


def test_every_table_renders(table1):
    for name, table in TABLES.items():
        if table.source == "records":
            assert csv_text(pivot(table, load_cells(table, [str(table1)])))


def test_mdc_table6_rows_in_the_order_of_p(tmp_path, capsys):
    """Whatever periods were run (the paper's or ones scaled to a CPU budget), rows go by P."""
    files = [write(tmp_path / f"P{p}.json", [rec("cx_cy", 2, y, runs=(p / 2 + y,), run_tag=f"P={p}") for y in (1, 2)])
             for p in (40, 5, 100, 1)]
    assert main(["mdc6", *files]) == 0
    methods = [r[0] for r in rows_of(capsys.readouterr().out).values() if r[0].startswith("P=")]
    assert methods == ["P=1", "P=5", "P=40", "P=100"]


def test_mls_trace_merges_windows_and_freeze_intervals(tmp_path, capsys):
    from evaluation import mls_trace

    run = tmp_path / "mdc"
    run.mkdir()
    recs = [{"type": "mls", "it": it, "mls": m} for it, m in ((1, 1), (5, 1), (10, 3), (15, 2), (20, 2))]
    recs += [{"type": "loss", "it": it, "loss": 1.0, "mls": [1], "frozen": f}
             for it, f in zip(range(1, 21), [-1] * 10 + [1] * 5 + [1] * 5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert mls_trace.main([f"P=5={run}"]) == 0
    out = capsys.readouterr().out
    assert ("| P=5 | 1 (it 1–5), 3 (it 10), 2 (it 15–20) | IPC-1 (it 11–20) | IPC-1: 2, IPC-2: 2, IPC-3: 1; "
            "frozen in 10 of 20 logged iterations |") in out
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metrics.jsonl").write_text(json.dumps({"type": "loss", "it": 1, "frozen": []}) + "\n")
    assert mls_trace.main([str(tmp_path / "c")]) == 2
    assert "no MLS records" in capsys.readouterr().err
