"""Every reproduction script under scripts/ has a dry run (DRY_RUN=1: print the commands, run nothing; DRY_RUN=jobs:
the same commands as a job list, sweep/jobs.py), and every command of its job list is parsed by the parser of the
script it calls, so a flag typo fails here."""
import glob
import os
import shlex
import subprocess

import pytest

from conftest import ROOT
from cli.arguments import parse_args
from helpers import CASE_IDS, CASES, check_commands, dry_run, job_argvs as jobs, parser_of


def tree():
    raid = os.path.join(ROOT, "raid")
    return sorted(os.listdir(ROOT)), sorted(os.path.relpath(os.path.join(d, f), raid)
                                             for d, _, fs in os.walk(raid) for f in fs)


def test_every_script_has_a_case():
    scripts = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "scripts", "*.sh"))} - {"lib.sh"}
    assert scripts == {c[0] for c in CASES}


@pytest.mark.parametrize("script,args,env", CASES, ids=CASE_IDS)
def test_dry_run_prints_commands_that_parse(tmp_path, ext, script, args, env):
    before = tree()
    path, args = os.path.join(ROOT, "scripts", script), [a.format(tmp=tmp_path, ext=ext) for a in args]
    cmds = jobs(path, args, env)
    assert check_commands(cmds) > 0
    # the text dry run for people prints the same commands, one shell line each
    out = dry_run(path, args, env)
    assert [shlex.split(line) for line in out.splitlines() if line.endswith(" ")] == cmds
    assert tree() == before and os.listdir(tmp_path) == []  # nothing ran, nothing was written


def test_budgets_change_the_commands_and_a_wrong_budget_fails():
    script = os.path.join(ROOT, "scripts", "mdc_table1.sh")
    paper, smoke = dry_run(script, ["cifar10", "2"]), dry_run(script, ["cifar10", "2"], {"BUDGET": "smoke"})
    assert paper.count("python3") == smoke.count("python3") == 4 + 8 + 1  # same runs, smaller budget
    assert "--inner_loop" not in paper and "--niter 1 --inner_loop 100" in smoke and "--epochs 2" in smoke
    assert "--repeat 3 --epochs 2 --repeat 1" in smoke  # the budget comes after the script's settings
    # Baseline A at IPC N is the C run and B's block 0 is A's IPC-1 run: nothing condensed twice
    folders = [shlex.split(line)[shlex.split(line).index("--save_dir") + 1] for line in paper.splitlines()
               if "condense_reg.py" in line]
    assert folders == ["raid/mdc_table1/cifar10/" + f for f in ("A_ipc1", "A_ipc1_idx_1", "C", "MDC")]
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=dict(os.environ, DRY_RUN="1", BUDGET="fast"))
    assert p.returncode == 2 and "BUDGET='fast' is not one of paper, cpu, smoke" in p.stderr  # the pre-check


def test_yoco_table1_generates_once_per_ipc_f_and_loops_over_runs():
    out = dry_run(os.path.join(ROOT, "scripts", "yoco_table1.sh"), ["cifar10"], {"GENERATE": "1"})
    lines = out.splitlines()
    assert sum("condense.py" in line for line in lines) == 2  # IPC_F 10 and 50
    dyn = [line for line in lines if "get_training_dynamics.py" in line]
    assert len(dyn) == 2 * 3 and len(set(dyn)) == 6  # one per (IPC_F, reproduce run), not per IPC_T
    tests = [line for line in lines if "test.py" in line]
    assert len(tests) == 3 * 7 * 9 and all("--run_tag yoco_table1" in t for t in tests)
    assert {shlex.split(t)[shlex.split(t).index("--reproduce_exp") + 1] for t in tests} == {
        "reproduce_1", "reproduce_2", "reproduce_3"}


def test_a_flag_typo_fails(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text(f'source {ROOT}/scripts/lib.sh\nrun python3 test.py -d cifar10 --ipcc 3\n')
    # the dry run refuses it itself (lib.sh's pre-check, sweep/precheck.py: tests/test_table_precheck.py) ...
    p = subprocess.run(["bash", str(bad)], capture_output=True, text=True, env=dict(os.environ, DRY_RUN="1"))
    assert p.returncode == 2 and p.stdout == "" and "unrecognized arguments: --ipcc 3" in p.stderr
    # ... and without the pre-check, the same parse in check_commands
    skip = {"_MDC_PRECHECKED": "1"}
    assert dry_run(str(bad), env=skip).strip() == "python3 test.py -d cifar10 --ipcc 3"
    with pytest.raises(AssertionError, match="does not parse"):
        check_commands(jobs(str(bad), env=skip))


# ---- MDC tables 1-11 -----------------------------------------------------------------------------------
def parsed(cmds):
    """(script, args, argv) of every python command of a job list: script is e.g. condense_reg.py or -m."""
    rows = []
    for cmd in cmds:
        if cmd[0].startswith("python"):
            factory, argv = parser_of(cmd)
            rows.append((os.path.basename(cmd[1]) if cmd[1] != "-m" else cmd[2], parse_args(factory(), argv), argv))
    return rows


def mdc(script, *args, **env):
    return parsed(jobs(os.path.join(ROOT, "scripts", script), args, env))


def condensations(rows):
    return {a.save_dir: a for s, a, _ in rows if s == "condense_reg.py"}


def evaluations(rows):
    return [a for s, a, _ in rows if s == "test.py"]


def test_mdc_table3_rows_carry_exactly_their_switches():
    rows = mdc("mdc_table3.sh", "cifar10", "10")
    runs = condensations(rows)
    want = {"raid/mdc_table1/cifar10/C": (False, "change", True),  # Baseline C: no subset loss (Table 1's run)
            "raid/mdc_table3/cifar10/random": (True, "random", False),
            "raid/mdc_table3/cifar10/distance": (True, "distance", False),
            "raid/mdc_table3/cifar10/change": (True, "change", False),
            "raid/mdc_table1/cifar10/MDC": (True, "change", True)}  # MDC = change + freezing (Table 1's run)
    assert {d: (a.adaptive_reg, a.mls_select, a.mls_freeze) for d, a in runs.items()} == want
    assert all(a.ipc == 10 and a.factor == 2 and a.resume and a.mls_metric == "feature" for a in runs.values())
    tags = {}
    for a in evaluations(rows):
        tags.setdefault(a.run_tag, set()).add((a.test_data_dir, a.ipcy, a.results_file))
    dirs = dict(zip(("C", "random", "distance", "change", "MDC"), want))
    assert set(tags) == set(dirs)
    for tag, evals in tags.items():  # every row: its own run, every prefix, its own results file
        assert {(d, y) for d, y, _ in evals} == {(dirs[tag], y) for y in range(1, 11)}
        assert {f for _, _, f in evals} == {f"raid/mdc_table3/cifar10/{tag}.json"}
    report, trace = rows[-2], rows[-1]
    assert report[0] == "evaluation.report" and report[1].table == "mdc3"
    # the MLS trajectories of the four MDC rows (their run folders, labelled as the table's rows)
    assert trace[0] == "evaluation.mls_trace" and trace[1].runs == [
        f"{tag}={dirs[tag]}" for tag in ("random", "distance", "change", "MDC")]


@pytest.mark.parametrize("budget,base", [("paper", 100), ("cpu", 5), ("smoke", 1)])
def test_mdc_table6_rows_carry_their_period_after_the_budget(budget, base):
    rows = mdc("mdc_table6.sh", "cifar10", "3", BUDGET=budget)
    runs = [(a, argv) for s, a, argv in rows if s == "condense_reg.py"]
    assert [a.adaptive_period for a, _ in runs] == [1, 10, 50, 100, 200, 500]  # P = 0 cannot run: not a row
    for a, argv in runs:
        last = len(argv) - 1 - argv[::-1].index("--adaptive_period")
        assert argv[last + 1] == str(a.adaptive_period) and argv.count("--adaptive_period") == (1 if budget == "paper" else 2)
        assert a.adaptive_reg and a.save_dir == ("raid/mdc_table1/cifar10/MDC" if a.adaptive_period == base
                                                 else f"raid/mdc_table6/cifar10/P{a.adaptive_period}")
    assert {a.run_tag for a in evaluations(rows)} == {f"P={p}" for p in (1, 10, 50, 100, 200, 500)}
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "mdc_table6.sh"), "cifar10", "3", "--adaptive_period", "7"],
                       capture_output=True, text=True, env=dict(os.environ, DRY_RUN="1"))
    assert p.returncode == 2 and "--adaptive_period is the setting Table 6 varies" in p.stderr


def test_mdc_table1_imagenet10_reuses_c_for_a_at_ipc_n():
    rows = mdc("mdc_table1.sh", "imagenet", "10")
    runs = condensations(rows)
    for a in runs.values():  # ImageNet-10: f = 3, ResNetAP-10, 500 iterations, from --reproduce
        assert (a.dataset, a.nclass, a.factor, a.net_type, a.depth, a.niter, a.size) == ("imagenet", 10, 3, "resnet_ap", 10, 500, 224)
    base = "raid/mdc_table1/imagenet/"
    assert sorted(runs) == sorted([base + f"A_ipc{k}" for k in range(1, 10)] + [base + f"A_ipc1_idx_{k}" for k in range(1, 10)]
                                  + [base + "C", base + "MDC"])
    assert [runs[d].ipc for d in (base + "C", base + "MDC")] == [10, 10]
    a_rows = {a.ipc: a.test_data_dir for a in evaluations(rows) if a.run_tag == "A"}
    assert a_rows == {**{k: base + f"A_ipc{k}" for k in range(1, 10)}, 10: base + "C"}  # A at IPC N = the C run
    assert {a.test_data_dir for a in evaluations(rows) if a.run_tag == "B"} == {base + "A_ipc1"}  # block 0 = A at IPC 1
    assert all(a.factor == 3 and a.net_type == "resnet_ap" for a in evaluations(rows))


def test_mdc_runs_shared_between_tables_have_one_setting():
    """C, MDC and DREAM (and Table 4's A/B runs) are condensed once for all tables: every table that names
    a shared folder condenses it with the same settings, so --resume finds it complete instead of failing."""
    from condensation.run_files import NUMBER_KEYS
    seen = {}
    for script in ("mdc_table1.sh", "mdc_table3.sh", "mdc_table4.sh", "mdc_table5.sh", "mdc_table6.sh", "mdc_table8.sh",
                   "mdc_table11.sh", "mdc_table2.sh"):
        args = (["no_external_sets"] if script == "mdc_table2.sh" else []) + ["cifar10", "3"]
        rows = mdc(script, *args, BUDGET="smoke", EXTERNAL_METHODS="")
        for d, a in condensations(rows).items():
            key = {k: getattr(a, k) for k in NUMBER_KEYS if hasattr(a, k)}
            seen.setdefault(d, {})[script] = key
    shared = {d: s for d, s in seen.items() if len(s) > 1}
    assert set(shared) >= {"raid/mdc_table1/cifar10/" + r for r in ("C", "MDC", "DREAM", "A_ipc1")}
    for d, per_script in shared.items():
        first = next(iter(per_script.values()))
        assert all(v == first for v in per_script.values()), d
    assert len(shared["raid/mdc_table1/cifar10/MDC"]) == 8  # Tables 1-6 (6: its P=1 row at the smoke budget), 8, 11


def test_mdc_table4_evaluates_table1_sets_with_other_networks():
    t1, t4 = mdc("mdc_table1.sh", "cifar10", "3"), mdc("mdc_table4.sh", "cifar10", "3")
    assert sorted(condensations(t1)) == sorted(condensations(t4))  # the same runs, not condensed again
    ev = evaluations(t4)
    assert len(ev) == 4 * 3 and all(a.eval_net == "resnet10_bn,densenet" for a in ev)
    assert {a.results_file for a in ev} == {f"raid/mdc_table4/cifar10/{r}.json" for r in ("A", "B", "C", "MDC")}


def test_mdc_table2_finds_external_sets_and_fails_naming_a_missing_one(tmp_path, ext):
    rows = mdc("mdc_table2.sh", ext, "cifar10", "3")
    ev = evaluations(rows)
    for m in ("dc", "dsa", "mtt"):
        mine = [a for a in ev if a.run_tag == m.upper()]
        assert len(mine) == 3 and all(a.test_data_dir == f"{ext}/{m}" and a.slct_type == m and a.factor == 1 for a in mine)
    assert {a.run_tag for a in ev} == {"DC", "DSA", "MTT", "IDC", "DREAM", "MDC"}
    assert condensations(rows)["raid/mdc_table1/cifar10/DREAM"].slct_type == "dream"
    part = tmp_path / "ext"
    for m in ("dc", "dsa"):
        (part / m).mkdir(parents=True)
    script = os.path.join(ROOT, "scripts", "mdc_table2.sh")
    for dry in ("1", "0"):  # before any work, with or without DRY_RUN: nothing is written
        work = tmp_path / f"work{dry}"
        work.mkdir()
        p = subprocess.run(["bash", script, str(part), "cifar10", "3"], capture_output=True, text=True,
                           env=dict(os.environ, DRY_RUN=dry, INSTALL="0", WORKDIR=str(work)))
        assert p.returncode == 2 and f"in the folder {part}/mtt, which does not exist" in p.stderr, p.stderr
        assert p.stdout == "" and os.listdir(work) == []
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=dict(os.environ, DRY_RUN="1"))
    assert p.returncode == 2 and "usage: bash scripts/mdc_table2.sh EXTERNAL_DIR" in p.stderr


def test_mdc_table10_evaluates_in_run_and_reports_metrics():
    rows = mdc("mdc_table10.sh", "fashion", "4", BUDGET="cpu")
    runs = condensations(rows)
    assert sorted(runs) == ["raid/mdc_table10/fashion/C", "raid/mdc_table10/fashion/MDC"]
    assert all(a.eval_during and a.eval_epochs == 60 for a in runs.values())  # the budget's evaluation epochs
    assert [a.adaptive_reg for a in runs.values()] == [False, True]
    report = rows[-1][1]
    assert report.table == "mdc10" and report.runs == ["C=raid/mdc_table10/fashion/C", "MDC=raid/mdc_table10/fashion/MDC"]
    assert all(a.eval_epochs == -1 for a in condensations(mdc("mdc_table10.sh")).values())  # paper: the protocol's


def test_mdc_tables_8_and_11_rows():
    runs = condensations(mdc("mdc_table8.sh", "cifar10", "3"))
    assert {d: (a.slct_type, a.adaptive_reg) for d, a in runs.items()} == {
        "raid/mdc_table1/cifar10/C": ("idc", False), "raid/mdc_table1/cifar10/MDC": ("idc", True),
        "raid/mdc_table1/cifar10/DREAM": ("dream", False), "raid/mdc_table8/cifar10/DREAM_MDC": ("dream", True)}
    rows = mdc("mdc_table11.sh", "cifar10", "3")
    assert {d: (a.adaptive_reg, a.adaptive_class_wise) for d, a in condensations(rows).items()} == {
        "raid/mdc_table1/cifar10/C": (False, False), "raid/mdc_table1/cifar10/MDC": (True, False),
        "raid/mdc_table11/cifar10/MDC_class_wise": (True, True)}
    assert [a.run_tag for a in evaluations(rows)][::3] == ["C", "MDC", "MDC class-wise"]
    t5 = condensations(mdc("mdc_table5.sh", "cifar10", "3"))
    assert {d: a.mls_metric for d, a in t5.items()} == {"raid/mdc_table1/cifar10/MDC": "feature",
                                                        "raid/mdc_table5/cifar10/gradient": "gradient",
                                                        "raid/mdc_table5/cifar10/accuracy": "accuracy"}
