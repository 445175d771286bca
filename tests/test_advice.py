"""Advice matches the situation and names real options (docs/failures.md#contradictory-switches-are-refused,
docs/condensing.md#one-process-per-run-folder).

* Contradictory switches (aliases of one setting, a switch and the setting it turns off) are refused before any
  work, naming both; consistent duplicates are accepted.
* A run folder held by a live process is reported as held (host, pid, since when, ``--lock_wait``), never with
  "pass --resume"; "pass --resume" only when nobody holds it.
* Every ``--flag`` named in a ``UserError`` or ``error:`` message of the code exists in a parser of a script that
  can reach the module printing it (a static scan; it fails on a planted wrong flag).
"""
import ast
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli, script_env
from helpers import OTHER_PROGRAMS, refused

# ---- contradictory switches -----------------------------------------------------------------------------------

CONDENSE = ["-d", "cifar10", "--data_dir", "data", "--ipc", "2", "--niter", "1", "--device", "cpu"]
DYN = ["-d", "cifar10", "--custom-data-dir", "s", "--ipc", "2", "--base-dir", "dyn", "--device", "cpu"]
TEST = ["-d", "cifar10", "--ipc", "2", "--test_data_dir", "s", "--device", "cpu"]

CONTRADICTIONS = [
    # (script, arguments, the two flags the line names)
    ("condense_reg.py", [*CONDENSE, "--tracker", "aim", "--use_aim", "False"], ("--use_aim False", "--tracker aim")),
    ("condense_reg.py", [*CONDENSE, "--tracker", "none", "--use_aim", "True"], ("--use_aim True", "--tracker none")),
    ("test.py", [*TEST, "--tracker", "tensorboard", "--use_aim", "True"], ("--use_aim True", "--tracker tensorboard")),
    ("get_training_dynamics.py", [*DYN, "--use_aim", "False", "--tracker", "aim"], ("--use_aim False", "--tracker aim")),
    ("condense.py", [*CONDENSE, "--folder_lock", "False", "--lock_wait", "60"], ("--folder_lock False", "--lock_wait 60")),
    ("get_training_dynamics.py", [*DYN, "--folder-lock", "False", "--lock-wait", "-1"],
     ("--folder-lock False", "--lock-wait -1")),
    ("condense_reg.py", [*CONDENSE, "--eval_during", "False", "--eval_epochs", "5"],
     ("--eval_during False", "--eval_epochs 5")),
    ("condense_reg_mp.py", [*CONDENSE, "--nclass_sub", "5", "--phase", "0", "--test", "--eval_during", "True"],
     ("--test", "--eval_during True")),
    ("get_training_dynamics.py", [*DYN, "--epochs", "10", "--iterations", "500"], ("--iterations 500", "--epochs 10")),
    ("test.py", [*TEST, "--slct_ipc", "1", "--pruning_key", "el2n_easy", "--use_hard"],
     ("--use_hard", "--pruning_key el2n_easy")),
    ("test.py", [*TEST, "--slct_ipc", "1", "--pruning_key", "el2n", "--balance"], ("--balance", "--pruning_key el2n")),
    ("test.py", [*TEST, "--slct_ipc", "1", "--random_selection"], ("--random_selection", "--pruning_key yoco")),
    ("test.py", [*TEST, "--condense_key", "dsa", "--load_mtt"], ("--load_mtt", "--condense_key dsa")),
]


@pytest.mark.parametrize("script,args,names", CONTRADICTIONS, ids=[" ".join(c[2]) for c in CONTRADICTIONS])
def test_contradictory_switches_are_refused_naming_both(tmp_path, script, args, names):
    line = refused(tmp_path, script, args, "contradict each other")
    assert line.startswith(f"error: {names[0]} and {names[1]} contradict each other; "), line


@pytest.mark.parametrize("argv", [
    ["--tracker", "aim", "--use_aim", "True"], ["--tracker", "tensorboard", "--use_aim", "False"],
    ["--tracker", "none", "--use_aim", "False"], ["--folder_lock", "False", "--lock_wait", "0"],
    ["--eval_during", "True", "--eval_epochs", "3"], ["--test", "--eval_during", "False"], ["--resume", "--load_checkpoint"],
    ["--reproduce", "--reproduce_condense"]])
def test_consistent_duplicates_are_accepted(argv):
    from cli.arguments import parse_args
    from condense_reg import get_args_parser

    parse_args(get_args_parser(), [*CONDENSE, *argv])


def test_consistent_yoco_flags_are_accepted():
    from cli.arguments import parse_args
    from test import get_args_parser

    for extra in (["--slct_ipc", "1", "--pruning_key", "el2n", "--use_hard"], ["--slct_ipc", "1", "--balance"],
                  ["--slct_ipc", "1", "--pruning_key", "random", "--random_selection"],
                  ["--condense_key", "mtt", "--load_mtt", "-f", "1"]):
        parse_args(get_args_parser(), [*TEST, *extra])


# ---- a folder held by a live process ----------------------------------------------------------------------------

HOLD = """import sys, time
from utils.runlock import FolderLock
lock = FolderLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A run folder holding another run's ``args.yaml``, and a function that starts a process holding its lock."""
    from fakedata import make_cifar

    make_cifar(str(tmp_path / "data"), 10, n_train=100, n_test=20)
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.yaml").write_text("dataset: cifar10\nipc: 3\n")
    procs = []

    def hold():
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=ROOT, env=script_env(),
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield tmp_path, run, hold
    for p in procs:
        p.kill()
        p.wait()


def _line(world, script, args):
    p = run_cli(script, *args, cwd=world, check=False)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("extra", [[], ["--resume"]], ids=["new run", "resume with other settings"])
def test_a_condensation_on_a_held_folder_is_told_who_holds_it(held, extra):
    world, run, hold = held
    args = [*CONDENSE, "--save_dir", "run", *extra]
    free = _line(world, "condense_reg.py", args)
    assert ("pass --resume" in free) if not extra else ("different settings" in free), free
    p = hold()
    line = _line(world, "condense_reg.py", args)
    assert f"is in use by another condensation run (host " in line and f"pid {p.pid}, since " in line, line
    assert "--lock_wait SECONDS" in line and "--resume" not in line, line


def test_a_dynamics_run_on_a_held_folder_is_told_who_holds_it(tmp_path):
    from data.condensed import save_condensed
    import torch

    save_condensed(str(tmp_path / "s" / "data.pt"), torch.rand(20, 3, 32, 32), torch.arange(10).repeat_interleave(2))
    out = tmp_path / "dyn" / "ipc2"
    out.mkdir(parents=True)
    (out / "args.yaml").write_text("epochs: 3\n")
    free = _line(tmp_path, "get_training_dynamics.py", DYN)
    assert "holds another dynamics run" in free and "pass --resume" in free, free
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, env=script_env(), stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        line = _line(tmp_path, "get_training_dynamics.py", DYN)
        assert f"is in use by another dynamics run (host " in line and f"pid {p.pid}, since " in line, line
        assert "--lock-wait SECONDS" in line and "--resume" not in line, line
    finally:
        p.kill()
        p.wait()


# ---- every suggested flag exists ----------------------------------------------------------------------------------

ENTRIES = {  # the programs with a command line: module -> how it is run (its parser: get_args_parser())
    **{name[:-3]: name for name in ("test.py", "condense_reg.py", "condense.py", "condense_reg_mp.py",
                                    "get_training_dynamics.py", "generate_importance_score.py")},
    "data.partitions": "python -m data.partitions", "evaluation.report": "python -m evaluation.report",
    "evaluation.mls_trace": "python -m evaluation.mls_trace", "sweep.local": "python -m sweep",
}
ERROR_CALLS = {"UserError", "DivergedError", "StopTraining"}


def _modules():
    """Dotted name -> source of every module of ours (not the tests, benchmarks or scripts/)."""
    out = {}
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith((".", "__")) and x not in ("tests", "benchmarks", "scripts")]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
                with open(os.path.join(d, f)) as fh:
                    out[rel[:-9] if rel.endswith(".__init__") else rel] = fh.read()
    return out


def _imports(tree, known):
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n:
                found.add(n)
                parts = n.split(".")  # a package's __init__ runs too
                found.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known)
    return found


def reach(sources, entries=ENTRIES):
    """Module -> the entries that import it (statically, function-level imports included, transitively)."""
    trees = {m: ast.parse(s) for m, s in sources.items()}
    edges = {m: _imports(t, sources) for m, t in trees.items()}
    out = {m: set() for m in sources}
    for entry in entries:
        seen, todo = set(), [entry]
        while todo:
            m = todo.pop()
            if m in seen or m not in edges:
                continue
            seen.add(m)
            todo.extend(edges[m])
        for m in seen:
            out[m].add(entry)
    return out


def _strings(node):
    """The literal text of a message expression: the constant parts of f-strings and concatenations, with ``{}``
    where a value is filled in (so that ``--load_{k}`` is no flag ``--load_``)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else "{}"
    if isinstance(node, ast.JoinedStr):
        return "".join(_strings(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    parts = [_strings(n) for n in ast.iter_child_nodes(node)]
    return " ".join(p for p in parts if p) or "{}"


def messages(source):
    """(line, text) of every error message in ``source``: the arguments of ``UserError(...)`` (and its kin) and
    every string printed starting with ``error:``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        text = " ".join(_strings(a) for a in node.args)
        if name in ERROR_CALLS or (name == "print" and text.lstrip().startswith("error:")):
            out.append((node.lineno, text))
    return out


FLAG = re.compile(r"(?<![\w/.{}-])(--[a-zA-Z][\w-]*)(?![\w{-])")
PROGRAM = re.compile(r"(?<![\w/.-])([\w]+\.py|torchrun|srun|sbatch|pip)\b")
OTHERS = ("torchrun", "srun", "sbatch", "pip")  # other programs' command lines, named in advice on launching


def wrong_flags(sources, reached, flags, other=OTHER_PROGRAMS):
    """Every ``module:line --flag`` of a message naming an option that no parser of the entries reaching the module
    has (``flags``: entry -> its option strings). A flag after a program's name in the same clause (``condense_reg.py
    --adaptive_reg True``, ``srun --ntasks-per-node``) is checked against that script's parser, or not at all for
    another program's."""
    bad = []
    for m, src in sources.items():
        known = set().union(*(flags[e] for e in reached.get(m, ()))) if reached.get(m) else None
        if known is None:
            continue  # no program of ours reaches it
        for line, text in messages(src):
            for clause in re.split(r"[;:()]", text):
                program = None
                for tok in re.finditer(f"{PROGRAM.pattern}|{FLAG.pattern}", clause):
                    if tok.group(1):
                        program = tok.group(1)
                        continue
                    flag = tok.group(2)
                    if program in OTHERS or flag in other:
                        continue
                    theirs = flags.get(program[:-3]) if program else None
                    if flag not in (theirs if theirs is not None else known):
                        bad.append(f"{m}:{line} {flag}")
    return bad


def entry_flags(entries=ENTRIES):
    """Entry -> every option string its parser accepts (as ``helpers.refused`` checks one message)."""
    import importlib

    out = {}
    for m in entries:
        parser = importlib.import_module(m).get_args_parser()
        out[m] = {o for a in parser._actions for o in a.option_strings}
    return out


@pytest.fixture(scope="module")
def scanned():
    sources = _modules()
    return sources, reach(sources), entry_flags()


def test_every_flag_in_every_message_exists(scanned):
    sources, reached, flags = scanned
    assert sum(len(messages(s)) for s in sources.values()) > 200, "the scan found too few messages"
    bad = wrong_flags(sources, reached, flags)
    assert not bad, "messages naming options no script reaching them has: " + ", ".join(bad)


def test_the_scan_finds_a_planted_wrong_flag(scanned):
    sources, reached, flags = scanned
    planted = dict(sources)
    planted["condensation.run_files"] = sources["condensation.run_files"] + (
        '\n\ndef planted(x):\n    raise UserError(f"--save_dir {x} is bad; pass --no_such_flag or --resume")\n'
        '\n\ndef printed():\n    print("error: use --neither_this", file=sys.stderr)\n')
    bad = wrong_flags(planted, reached, flags)
    assert [b.split()[-1] for b in bad] == ["--no_such_flag", "--neither_this"], bad
    # a flag of another program only: the dynamics run's --base-dir in a module only the condensation scripts reach
    planted = dict(sources)
    planted["condensation.loop"] = sources["condensation.loop"] + '\nUserError("pass --base-dir")\n'
    assert [b.split()[-1] for b in wrong_flags(planted, reached, flags)] == ["--base-dir"]
    # a flag named as another script's: checked against that script's parser
    planted["condensation.loop"] = sources["condensation.loop"] + (
        '\nUserError(f"run get_training_dynamics.py --base-dir {x}; or condense_reg.py --base-dir; srun --any")\n')
    assert [b.split()[-1] for b in wrong_flags(planted, reached, flags)] == ["--base-dir"]


def test_the_scan_maps_modules_to_their_scripts(scanned):
    _, reached, _ = scanned
    assert reached["condensation.loop"] >= {"condense_reg", "condense", "condense_reg_mp"}
    assert "test" not in reached["condensation.loop"]
    assert {"get_training_dynamics", "generate_importance_score"} <= reached["yoco.dynamics"]
    assert "test" in reached["evaluation.sources"] and "sweep.local" in reached["sweep.jobs"]
