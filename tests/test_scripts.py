"""Every reproduction script under scripts/ has a dry run (DRY_RUN=1: print the commands, run nothing),
and every command it prints is parsed by the parser of the script it calls, so a flag typo fails here."""
import glob
import importlib
import os
import shlex
import subprocess

import pytest

from conftest import ROOT
from utils.arguments import parse_args
from utils.img_loader import check_pruning_key

# (script, arguments, extra environment): every script, with the variants that print other commands
CASES = [
    ("main_job.sh", ["{tmp}/main_job"], {}),
    ("main_job.sh", ["{tmp}/main_job"], {"BUDGET": "smoke"}),
    ("mdc_table1.sh", [], {}),
    ("mdc_table1.sh", ["cifar100", "10"], {"BUDGET": "cpu"}),
    ("mdc_table1.sh", ["svhn", "3", "--niter", "10"], {"BUDGET": "smoke"}),
    ("mdc_table1.sh", ["fashion", "4"], {"BUDGET": "cpu"}),
    ("yoco_fashion.sh", ["{tmp}/yoco_fashion"], {}),
    ("yoco_table1.sh", ["cifar10"], {"GENERATE": "1"}),
    ("yoco_table1.sh", ["cifar100", "reproduce_1"], {"BUDGET": "smoke"}),
    ("yoco_table1.sh", ["imagenet"], {"GENERATE": "1", "BUDGET": "cpu"}),
    ("yoco_table2.sh", [], {}),
    ("yoco_table3.sh", ["reproduce_2"], {}),
    ("yoco_table4.sh", [], {"BUDGET": "smoke"}),
    ("yoco_table5.sh", [], {}),
]


def dry_run(path, args=(), env=None):
    e = dict(os.environ, DRY_RUN="1", **(env or {}))
    p = subprocess.run(["bash", path, *args], capture_output=True, text=True, env=e, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def parser_of(cmd):
    """(parser factory, argv) of a printed ``python[3] X.py ...`` or ``python[3] -m module ...`` line."""
    if cmd[1] == "-m":
        return importlib.import_module(cmd[2]).get_args_parser, cmd[3:]
    return importlib.import_module(os.path.basename(cmd[1])[:-3]).get_args_parser, cmd[2:]


def check_commands(out):
    """Parse every python command of a dry run; returns how many there were."""
    n = 0
    for line in out.splitlines():
        cmd = shlex.split(line)
        if not cmd or not cmd[0].startswith("python"):
            continue
        factory, argv = parser_of(cmd)
        try:
            args = parse_args(factory(), argv)
        except SystemExit:
            raise AssertionError(f"the command does not parse: {line}")
        if getattr(args, "slct_ipc", 0) > 0:
            check_pruning_key(args.pruning_key)  # a key outside the grammar fails here, not days later
        n += 1
    return n


def tree():
    raid = os.path.join(ROOT, "raid")
    return sorted(os.listdir(ROOT)), sorted(os.path.relpath(os.path.join(d, f), raid)
                                             for d, _, fs in os.walk(raid) for f in fs)


def test_every_script_has_a_case():
    scripts = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "scripts", "*.sh"))} - {"lib.sh"}
    assert scripts == {c[0] for c in CASES}


@pytest.mark.parametrize("script,args,env", CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1][:1])}-{c[2].get('BUDGET', 'paper')}" for c in CASES])
def test_dry_run_prints_commands_that_parse(tmp_path, script, args, env):
    before = tree()
    out = dry_run(os.path.join(ROOT, "scripts", script), [a.format(tmp=tmp_path) for a in args], env)
    assert check_commands(out) > 0
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
    assert p.returncode == 2 and "BUDGET=fast is not a budget" in p.stderr


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
    bad.write_text(f'source {ROOT}/scripts/lib.sh\nrun python test.py -d cifar10 --ipcc 3\n')
    out = dry_run(str(bad))
    assert out.strip() == "python test.py -d cifar10 --ipcc 3"
    with pytest.raises(AssertionError, match="does not parse"):
        check_commands(out)
