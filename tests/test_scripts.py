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
    ("mdc_table1.sh", [], {}),
    ("mdc_table1.sh", ["cifar100", "10"], {}),
    ("mdc_table1.sh", ["svhn", "3", "--niter", "10"], {}),
    ("yoco_fashion.sh", ["{tmp}/yoco_fashion"], {}),
    ("yoco_table1.sh", ["cifar10"], {"GENERATE": "1"}),
    ("yoco_table1.sh", ["cifar100", "reproduce_1"], {}),
    ("yoco_table1.sh", ["imagenet"], {"GENERATE": "1"}),
    ("yoco_table2.sh", [], {}),
    ("yoco_table3.sh", ["reproduce_2"], {}),
    ("yoco_table4.sh", [], {}),
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


@pytest.mark.parametrize("script,args,env", CASES, ids=[f"{c[0]}-{'-'.join(c[1][:1])}" for c in CASES])
def test_dry_run_prints_commands_that_parse(tmp_path, script, args, env):
    before = tree()
    out = dry_run(os.path.join(ROOT, "scripts", script), [a.format(tmp=tmp_path) for a in args], env)
    assert check_commands(out) > 0
    assert tree() == before and os.listdir(tmp_path) == []  # nothing ran, nothing was written


def test_a_flag_typo_fails(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text(f'source {ROOT}/scripts/lib.sh\nrun python test.py -d cifar10 --ipcc 3\n')
    out = dry_run(str(bad))
    assert out.strip() == "python test.py -d cifar10 --ipcc 3"
    with pytest.raises(AssertionError, match="does not parse"):
        check_commands(out)
