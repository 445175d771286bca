"""Every field of every file the evaluation side reads is checked (docs/failures.md#every-field-of-every-file-is-checked):
the results records of ``test.py``, a condensation run's ``metrics.jsonl`` and its ``args.yaml``. Each bad input
is one ``error:`` line naming the file, the record (or line) and the field, exit status 2 on the command lines,
nothing written; good files still read."""
import copy
import json
import math
from types import SimpleNamespace

import pytest

from helpers import refused, run_main
from utils.errors import UserError

DELETE = object()
NAN, INF = float("nan"), float("inf")


def good_record(**args):
    """A record as ``evaluation.records.make_record`` writes it (every field)."""
    a = dict(ipc=2, ipcy=-1, dataset="cifar10", nclass=10, factor=2, run_tag="", slct_ipc=0, pruning_key="yoco",
             condense_key="idc", reproduce_exp="reproduce_3", lr=0.01)
    a.update(args)
    run = {"best": 50.0, "last": 49.0, "curve": [[1, 40.0], [2, 49.0]], "seconds": 1.5}
    return {"run_id": "r1", "time": "2024-01-01T00:00:00", "wall_seconds": 3.0, "device": "cpu", "device_name": "x86",
            "torch": "2.0", "source": "cond", "test_type": "other", "n_train": 80, "args": a,
            "results": {"convnet": {"runs": [run, dict(run, best=52.0)], "best": {"mean": 51.0, "std": 1.0},
                                    "last": {"mean": 49.0, "std": 0.0}}},
            "protocol": {"nets": {"convnet": {"depth": 3, "width": 1.0, "norm_type": "instance", "seeds": [0, 1]}},
                         "epochs": 6, "lr": 0.01, "lr_gamma": 0.2, "lr_milestones": [4, 5], "momentum": 0.9,
                         "weight_decay": 5e-4, "batch_size": 64, "dsa": True, "dsa_strategy": "color_crop",
                         "mixup": "cut", "mix_p": 0.5, "beta": 1.0, "repeats": 2, "val_per_class": 0, "val_seed": None,
                         "accuracies": ["best", "last"], "precision": "fp32", "device": "cpu", "device_name": "x86",
                         "torch": "2.0", "wall_seconds": 3.0}}


def edited(doc, *edits):
    """A deep copy of ``doc`` with each ``(path, value)`` set (``DELETE``: the key removed)."""
    doc = copy.deepcopy(doc)
    for path, value in edits:
        at = doc
        for k in path[:-1]:
            at = at[k]
        if value is DELETE:
            del at[path[-1]]
        else:
            at[path[-1]] = value
    return doc


RUN = ("results", "convnet", "runs", 0)
# (edits of record 1, the field named, words of the problem)
RECORD_CASES = [
    ([(("n_train",), DELETE)], "n_train", "is missing"),
    ([(("n_train",), True)], "n_train", "is True, expected an integer"),
    ([(("n_train",), 2.5)], "n_train", "expected an integer"),
    ([(("n_train",), 0)], "n_train", "is 0, below 1"),
    ([(("test_type",), "cxcy")], "test_type", "not one of 'other', 'cx_cy', 'baseline_b'"),
    ([(("run_id",), 5)], "run_id", "expected a string"),
    ([(("wall_seconds",), -1.0)], "wall_seconds", "below 0"),
    ([(("args", "ipc"), "two")], "args.ipc", "is 'two', expected an integer"),
    ([(("args", "ipc"), 0)], "args.ipc", "is 0, not -1 or >= 1"),
    ([(("args", "nclass"), DELETE)], "args.nclass", "is missing"),
    ([(("args", "nclass"), False)], "args.nclass", "expected an integer"),
    ([(("args", "dataset"), "")], "args.dataset", "is empty"),
    ([(("args", "dataset"), 10)], "args.dataset", "expected a string"),
    ([(("args", "factor"), 0)], "args.factor", "is 0, not >= 1"),
    ([(("args", "run_tag"), None)], "args.run_tag", "is None, expected a string"),
    ([(("args", "ipc"), -1), (("n_train",), 3)], "n_train", "less than one image per class"),
    ([(("test_type",), "cx_cy"), (("args", "ipcy"), 3)], "args.ipcy", "is 3 with ipc 2"),
    ([(("args", "slct_ipc"), 2)], "args.slct_ipc", "is 2 with ipc 2"),
    ([(("results",), {})], "results", "is empty"),
    ([(("results", "convnet"), "abc")], "results.convnet", "is 'abc', expected a mapping"),
    ([(("results", "convnet", "runs"), "x")], "results.convnet.runs", "expected a list"),
    ([(RUN, 5)], "results.convnet.runs[0]", "is 5, expected a mapping"),
    ([(RUN + ("best",), DELETE)], "results.convnet.runs[0].best", "is missing"),
    ([(RUN + ("best",), NAN)], "results.convnet.runs[0].best", "is nan (not a finite number)"),
    ([(RUN + ("best",), INF)], "results.convnet.runs[0].best", "is inf (not a finite number)"),
    ([(RUN + ("best",), 101)], "results.convnet.runs[0].best", "is 101, above 100"),
    ([(RUN + ("best",), -0.5)], "results.convnet.runs[0].best", "below 0"),
    ([(RUN + ("best",), None)], "results.convnet.runs[0].best", "is None, expected a number"),
    ([(RUN + ("best",), "50")], "results.convnet.runs[0].best", "expected a number"),
    ([(RUN + ("best",), True)], "results.convnet.runs[0].best", "is True, expected a number"),
    ([(RUN + ("last",), NAN)], "results.convnet.runs[0].last", "not a finite number"),
    ([(RUN + ("seconds",), -INF)], "results.convnet.runs[0].seconds", "not a finite number"),
    ([(RUN + ("curve",), [[1]])], "results.convnet.runs[0].curve[0]", "is [1], expected [epoch, accuracy]"),
    ([(RUN + ("curve",), [[1, 200.0]])], "results.convnet.runs[0].curve[0][1]", "above 100"),
    ([(RUN + ("curve",), [[0.5, 20.0]])], "results.convnet.runs[0].curve[0][0]", "expected an integer"),
    ([(("results", "convnet", "best", "std"), -1.0)], "results.convnet.best.std", "below 0"),
    ([(("results", "convnet", "last"), [1])], "results.convnet.last", "expected a mapping"),
    ([(("results", "convnet", "runs"), DELETE), (("results", "convnet", "best"), DELETE)], "results.convnet.best",
     "is missing"),
    # every accuracy NaN: refused, never printed as "nan ± nan"
    ([(("results", "convnet", "runs"), []), (("results", "convnet", "best"), {"mean": NAN, "std": NAN})],
     "results.convnet.best.mean", "not a finite number"),
    # held-out validation (test.py --val_per_class): optional, checked as their siblings
    ([(RUN + ("best_on_val",), NAN)], "results.convnet.runs[0].best_on_val", "not a finite number"),
    ([(RUN + ("best_on_val",), 101)], "results.convnet.runs[0].best_on_val", "above 100"),
    ([(RUN + ("val_curve",), [[0, 20.0]])], "results.convnet.runs[0].val_curve[0][0]", "is 0, below 1"),
    ([(RUN + ("val_curve",), [[1, -1.0]])], "results.convnet.runs[0].val_curve[0][1]", "below 0"),
    ([(RUN + ("val_curve",), [[1, 2, 3]])], "results.convnet.runs[0].val_curve[0]", "expected [epoch, accuracy]"),
    ([(("results", "convnet", "best_on_val"), {"mean": 50.0, "std": -1.0})], "results.convnet.best_on_val.std",
     "below 0"),
    # the protocol card (docs/evaluating.md#protocol-card-and-report)
    ([(("protocol",), "x")], "protocol", "expected a mapping"),
    ([(("protocol", "epochs"), DELETE)], "protocol.epochs", "is missing"),
    ([(("protocol", "epochs"), 0)], "protocol.epochs", "is 0, below 1"),
    ([(("protocol", "lr"), -0.1)], "protocol.lr", "not > 0"),
    ([(("protocol", "lr"), None)], "protocol.lr", "is None, expected a number"),
    ([(("protocol", "momentum"), 1.5)], "protocol.momentum", "above 1"),
    ([(("protocol", "dsa"), "yes")], "protocol.dsa", "expected true/false"),
    ([(("protocol", "mixup"), "mix")], "protocol.mixup", "not one of 'vanilla', 'cut'"),
    ([(("protocol", "mix_p"), NAN)], "protocol.mix_p", "not a finite number"),
    ([(("protocol", "val_per_class"), -1)], "protocol.val_per_class", "below 0"),
    ([(("protocol", "accuracies"), ["best", "top5"])], "protocol.accuracies[1]", "not one of"),
    ([(("protocol", "accuracies"), [])], "protocol.accuracies", "is empty"),
    ([(("protocol", "lr_milestones"), [4, "x"])], "protocol.lr_milestones[1]", "expected an integer"),
    ([(("protocol", "wall_seconds"), -1.0)], "protocol.wall_seconds", "below 0"),
    ([(("protocol", "nets", "convnet", "depth"), 0)], "protocol.nets.convnet.depth", "is 0, below 1"),
    ([(("protocol", "nets", "convnet", "seeds"), [0, 1.5])], "protocol.nets.convnet.seeds[1]", "expected an integer"),
    ([(("protocol", "nets"), {"resnet": {}})], "protocol.nets", "is for resnet, but the record's results are of convnet"),
    ([(("protocol", "repeats"), 3)], "protocol.repeats", "is 3, but results.convnet lists 2 runs"),
    ([(("protocol", "nets", "convnet", "seeds"), [7])], "protocol.repeats", "lists 1 seeds"),
]
RECORD_IDS = [f"{c[1]}:{c[2][:24]}" for c in RECORD_CASES]


def write_records(folder, records, name="r.json"):
    (folder / name).write_text(json.dumps(records))  # NaN/Infinity as JSON's extension, as a hand edit may write
    return name


@pytest.mark.parametrize("edits,field,problem", RECORD_CASES, ids=RECORD_IDS)
def test_report_refuses_a_bad_record_field(tmp_path, edits, field, problem):
    name = write_records(tmp_path, [good_record(), edited(good_record(), *edits)])
    line = refused(tmp_path, "evaluation.report", ["prefix", name], f"{name}: record 1: field '{field}' is",
                   runner=run_main)
    assert problem in line and line.endswith("; repair or remove that record, or re-run its evaluation with test.py")


@pytest.mark.parametrize("edits,field,problem", RECORD_CASES, ids=RECORD_IDS)
def test_test_py_reads_results_files_through_the_same_check(tmp_path, edits, field, problem):
    """``test.py``'s check before any work (``read_records``) and the report share ``read_record``."""
    from evaluation.records import read_records

    name = write_records(tmp_path, [good_record(), edited(good_record(), *edits)])
    with pytest.raises(UserError) as e:
        read_records(str(tmp_path / name))
    msg = str(e.value)
    assert "\n" not in msg and f"{name}: record 1: field '{field}' is" in msg and problem in msg
    assert msg.endswith("repair or remove that record, or pass another --results_file")


def test_test_py_refuses_a_bad_results_file_before_any_work(tmp_path):
    import torch

    torch.save([torch.rand(20, 3, 32, 32), torch.arange(10).repeat_interleave(2)], tmp_path / "good.pt")
    name = write_records(tmp_path, [edited(good_record(), (RUN + ("best",), NAN))])
    refused(tmp_path, "test.py", ["--test_data_dir", "good.pt", "-d", "cifar10", "--data_dir", "data", "--epochs",
                                  "1", "--device", "cpu", "--results_file", name],
            f"{name}: record 0: field 'results.convnet.runs[0].best' is nan")


@pytest.mark.parametrize("doc,needle", [({"a": 1}, "not a JSON list of records (it holds an object)"),
                                        ([], "holds no records (an empty list)"),
                                        ([good_record(), 3], "item 1 is 3, not a record")])
def test_report_refuses_a_bad_top_level(tmp_path, doc, needle):
    name = write_records(tmp_path, doc)
    refused(tmp_path, "evaluation.report", ["prefix", name], f"{name} {needle}" if doc == [] else needle,
            runner=run_main)


def test_a_bad_record_in_a_folder_is_named_too(tmp_path):
    """A folder's JSON lists of records (any name) are read through the same check; other JSON is skipped."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "other.json").write_text(json.dumps({"not": "records"}))
    write_records(tmp_path / "runs", [edited(good_record(), (("args", "ipc"), "two"))], "mine.json")
    refused(tmp_path, "evaluation.report", ["prefix", "runs"], "mine.json: record 0: field 'args.ipc'", runner=run_main)


def test_good_records_still_report(tmp_path):
    from evaluation.records import read_records

    val = {"best_on_val": 48.0, "val_curve": [[1, 30.0], [2, 35.0]]}
    recs = [good_record(), good_record(ipc=-1), edited(good_record(), (("results", "convnet", "runs"), [])),
            edited(good_record(), (("protocol",), DELETE)),  # a record without a card: protocol unknown
            edited(good_record(), (RUN, dict(good_record()["results"]["convnet"]["runs"][0], **val)),
                   (("results", "convnet", "best_on_val"), {"mean": 48.0, "std": 0.0}))]
    name = write_records(tmp_path, recs)
    assert read_records(str(tmp_path / name)) == recs
    p = run_main("evaluation.report", "prefix", name, cwd=tmp_path, check=True)
    assert "51.00 ± 1.00" in p.stdout and "nan" not in p.stdout
    (tmp_path / "empty.json").write_text("[]")  # test.py appends to an empty results file
    assert read_records(str(tmp_path / "empty.json")) == []


def test_a_partial_file_of_these_settings_is_checked_too(tmp_path):
    """``test.py``'s ``.partial`` file (finished repeats of an interrupted evaluation): its repeats as a record's."""
    from evaluation.records import PartialRuns

    args = SimpleNamespace(test_type="other", lr=0.01, explicit=[], val_per_class=2, val_seed=0)
    first = PartialRuns(str(tmp_path / "r.json"), args)
    first.save("convnet", [{"best": 50.0, "last": 49.0, "curve": [[1, 49.0]], "seconds": 1.0, "best_on_val": 48.0,
                            "val_curve": [[1, 30.0]]}])
    assert PartialRuns(str(tmp_path / "r.json"), args).done == first.done
    for other in (dict(val_per_class=0), dict(val_seed=1)):  # the validation settings key the file
        assert PartialRuns(str(tmp_path / "r.json"), SimpleNamespace(**{**vars(args), **other})).path != first.path
    doc = json.loads(open(first.path).read())
    doc["runs"]["convnet"][0]["best"] = NAN
    open(first.path, "w").write(json.dumps(doc))
    with pytest.raises(UserError, match=r"\.partial: field 'runs.convnet\[0\].best' is nan \(not a finite number\); "
                                        r"delete it"):
        PartialRuns(str(tmp_path / "r.json"), args)


def test_non_finite_accuracies_are_never_aggregated():
    """The last line of defence where the report computes means and stds (``evaluation.tables``)."""
    from evaluation.tables import TABLES, Cell, mean_std, pivot

    for runs in ([NAN, 50.0], [INF], []):
        with pytest.raises(UserError, match="finite accuracies"):
            pivot(TABLES["prefix"], [Cell(label="x", dataset="cifar10", net="convnet", ipc=1, runs=runs)])
    with pytest.raises(UserError):
        pivot(TABLES["prefix"], [Cell(label="x", dataset="cifar10", net="convnet", ipc=1, runs=[50.0], std=NAN)])
    assert mean_std([50.0, 52.0]) == (51.0, 1.0)


# ------------------------------------------------------------------------------------------------
# metrics.jsonl

def good_metrics():
    """The records of an MDC run as condensation/loop.py writes them (one of each type, global and class-wise)."""
    return [{"type": "eval", "it": 0, "subset": "ipc2", "net": "convnet", "best": 20.0, "best_std": 0.5,
             "last": 19.0, "epochs": 3},
            {"type": "net", "it": 1, "top1": 30.0, "loss": 2.1},
            {"type": "mls", "it": 1, "dbar": [1.5, 2.0], "delta": None, "mls": 1},
            {"type": "loss", "it": 1, "loss": 0.8, "mls": [1], "frozen": -1, "seconds": 0.5, "sec_per_it": None},
            {"type": "mls", "it": 2, "dbar": [[1.0, 2.0], [3.0, None]], "delta": [None, [0.1, 0.2]], "mls": [1, 2]},
            {"type": "loss", "it": 2, "loss": 0.7, "mls": [[1], [2]], "frozen": [-1, 1], "seconds": 1.0,
             "sec_per_it": 0.5},
            {"type": "save", "it": 2, "file": "data_2.pt"},
            {"type": "eval", "it": 2, "subset": "ipc1", "net": "convnet", "best": 25.0, "best_std": 0.0,
             "last": 24.0, "epochs": 3}]


# (line, edits of that line's record, the field named, words of the problem); lines count from 1
METRICS_CASES = [
    (2, [(("type",), DELETE)], "type", "is missing"),
    (2, [(("type",), "nett")], "type", "not one of 'net', 'loss', 'mls', 'save', 'eval'"),
    (2, [(("it",), "1")], "it", "expected an integer"),
    (2, [(("it",), True)], "it", "expected an integer"),
    (2, [(("it",), -1)], "it", "below 0"),
    (2, [(("top1",), NAN)], "top1", "not a finite number"),
    (2, [(("top1",), 200)], "top1", "above 100"),
    (2, [(("loss",), None)], "loss", "is None, expected a number"),
    (3, [(("mls",), 0)], "mls", "below 1"),
    (3, [(("mls",), [1, [2]])], "mls[1]", "expected an integer"),
    (3, [(("dbar",), [[1.0]])], "dbar[0]", "expected a number or null"),
    (3, [(("dbar",), [INF])], "dbar[0]", "not a finite number"),
    (4, [(("frozen",), "x")], "frozen", "expected an integer or a list"),
    (4, [(("frozen",), -2)], "frozen", "below -1"),
    (4, [(("loss",), NAN)], "loss", "not a finite number"),
    (4, [(("sec_per_it",), -1)], "sec_per_it", "below 0"),
    (5, [(("delta",), [None, [0.1, "x"]])], "delta[1][1]", "expected a number or null"),
    (6, [(("mls",), [[0], [2]])], "mls[0][0]", "below 1"),
    (6, [(("frozen",), [1, True])], "frozen[1]", "expected an integer"),
    (7, [(("file",), "")], "file", "is empty"),
    (8, [(("subset",), "all")], "subset", "expected ipcN"),
    (8, [(("best",), NAN)], "best", "not a finite number"),
    (8, [(("best",), 101.0)], "best", "above 100"),
    (8, [(("best_std",), -1)], "best_std", "below 0"),
    (8, [(("last",), DELETE)], "last", "is missing"),
    (8, [(("net",), 5)], "net", "expected a string"),
    (8, [(("epochs",), 0)], "epochs", "below 1"),
]
METRICS_IDS = [f"{c[0]}:{c[2]}:{c[3][:20]}" for c in METRICS_CASES]


def write_run(folder, records, args_yaml="dataset: cifar10\nipc: 2\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.yaml").write_text(args_yaml)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def bad_metrics(line, edits):
    recs = good_metrics()
    recs[line - 1] = edited(recs[line - 1], *edits)
    return recs


@pytest.mark.parametrize("line,edits,field,problem", METRICS_CASES, ids=METRICS_IDS)
def test_report_mdc10_refuses_a_bad_metrics_field(tmp_path, line, edits, field, problem):
    write_run(tmp_path / "run", bad_metrics(line, edits))
    msg = refused(tmp_path, "evaluation.report", ["mdc10", "run"], f"run/metrics.jsonl: line {line}: field '{field}' is",
                  runner=run_main)
    assert problem in msg


@pytest.mark.parametrize("line,edits,field,problem", METRICS_CASES, ids=METRICS_IDS)
def test_resume_and_mls_trace_read_metrics_through_the_same_check(tmp_path, line, edits, field, problem):
    from condensation.run_files import read_metrics

    run = write_run(tmp_path / "run", bad_metrics(line, edits))
    with pytest.raises(UserError) as e:
        read_metrics(str(run))
    msg = str(e.value)
    assert "\n" not in msg and f"metrics.jsonl: line {line}: field '{field}' is" in msg and problem in msg
    refused(tmp_path, "evaluation.mls_trace", ["run"], f"line {line}: field '{field}'", runner=run_main)


def test_metrics_line_numbers_skip_blank_lines(tmp_path):
    from condensation.run_files import read_metrics

    run = write_run(tmp_path / "run", [])
    recs = good_metrics()
    recs[1]["top1"] = -1
    (run / "metrics.jsonl").write_text("\n" + "\n".join(json.dumps(r) for r in recs) + "\n{\"type\": \"ev")
    with pytest.raises(UserError, match=r"metrics.jsonl: line 3: field 'top1' is -1, below 0"):
        read_metrics(str(run))


def test_good_metrics_still_read(tmp_path):
    from condensation.run_files import read_metrics

    run = write_run(tmp_path / "run", good_metrics())
    assert read_metrics(str(run)) == good_metrics()
    p = run_main("evaluation.report", "mdc10", "run", cwd=tmp_path, check=True)
    assert "| 0 | – | 20.00 ± 0.50 (n=?) | – |" in p.stdout and "| 2 | 25.00 ± 0.00 (n=?) | – | – |" in p.stdout
    p = run_main("evaluation.mls_trace", "run", cwd=tmp_path, check=True)
    assert "| run | 1 (it 1–2) |" in p.stdout


# ------------------------------------------------------------------------------------------------
# args.yaml

@pytest.mark.parametrize("text,needle", [("dataset: 5\n", "field 'dataset' is 5, expected a string"),
                                         ("dataset: ''\n", "field 'dataset' is empty"),
                                         ("1: cifar10\n", "field '1' is a key of type int"),
                                         ("- dataset\n", "holds a YAML list, not a mapping")])
def test_report_refuses_a_bad_args_yaml(tmp_path, text, needle):
    write_run(tmp_path / "run", good_metrics(), text)
    line = refused(tmp_path, "evaluation.report", ["mdc10", "run"], needle, runner=run_main)
    assert "run/args.yaml" in line


def resume_args(**kw):
    a = dict(dataset="cifar10", ipc=2, lr=0.01, bias=False, seed=0, net_type="convnet", explicit=[])
    a.update(kw)
    return SimpleNamespace(**a)


@pytest.mark.parametrize("text,needle", [("ipc: two\n", "field 'ipc' is 'two', expected an integer or null"),
                                         ("ipc: 2.5\n", "field 'ipc' is 2.5, expected an integer"),
                                         ("lr: .nan\n", "field 'lr' is nan (not a finite number)"),
                                         ("lr: .inf\n", "field 'lr' is inf (not a finite number)"),
                                         ("lr: '0.01'\n", "field 'lr' is '0.01', expected a number"),
                                         ("bias: 1\n", "field 'bias' is 1, expected true/false or null"),
                                         ("net_type: [convnet]\n", "field 'net_type' is a list of 1 items"),
                                         ("dataset: 3\n", "field 'dataset' is 3, expected a string")])
def test_resume_refuses_a_bad_args_yaml(tmp_path, text, needle):
    from condensation.run_files import check_resume_args

    (tmp_path / "args.yaml").write_text(text)
    with pytest.raises(UserError) as e:
        check_resume_args(resume_args(), str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "args.yaml: " + needle in msg and msg.endswith("(or pass another --save_dir)")


def test_resume_still_compares_good_settings(tmp_path):
    from condensation.run_files import check_resume_args

    (tmp_path / "args.yaml").write_text("dataset: cifar10\nipc: 2\nlr: 0.01\nbias: false\nseed: 0\nunread: [1]\n")
    check_resume_args(resume_args(), str(tmp_path))
    with pytest.raises(UserError, match=r"different settings \(ipc: 2 -> 3\)"):
        check_resume_args(resume_args(ipc=3), str(tmp_path))


# ------------------------------------------------------------------------------------------------
# the helper itself (utils/fields.py)

def test_fields_names_the_file_the_record_and_the_path():
    from utils.fields import Fields

    f = Fields({"a": {"b": [1, [2, "x"]]}, "n": True, "r": -1}, "f.json", "fix it", index=4)
    with pytest.raises(UserError, match=r"^f.json: record 4: field 'a.b\[1\]\[1\]' is 'x', expected an integer; fix it$"):
        f.sub("a").tree("b", int, 2)
    with pytest.raises(UserError, match="field 'n' is True, expected an integer"):
        f.get("n", int)
    with pytest.raises(UserError, match="field 'r' is -1, not -1 or >= 1|field 'r' is -1, not >= 1"):
        f.get("r", int, valid=">= 1")
    assert f.get("r", int, valid="-1 or >= 1") == -1 and f.get("zz", int, default=7) == 7
    with pytest.raises(UserError, match=r"^g.jsonl: line 2 is 3, not a mapping; fix$"):
        Fields(3, "g.jsonl", "fix", index=2, unit="line")
    assert math.isnan(Fields({"x": NAN}, "s", "f").get("x", float))  # finiteness only when asked
