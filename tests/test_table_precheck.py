"""The pre-check of the table scripts and the sweep (sweep/precheck.py, scripts/lib.sh; docs/reproducing.md#the-pre-check):
a bad flag, a stray word, a bad switch value or bad --gpus ids is one `error:` line naming it and the fix, exit 2,
before anything starts: no job, no log folder, no output."""
import os
import re
import sys

import pytest

from conftest import ROOT
from helpers import CASES, precheck_refused
from sweep.precheck import declarations

SCRIPTS = sorted({c[0] for c in CASES})
FIRST = {s: next(c for c in CASES if c[0] == s) for s in SCRIPTS}  # a good invocation of each script
BAD = {"F:T": "10:x", "dir": "/nonexistent/folder", "flag:--epochs": "ten", "flag:--precision": "fp8"}


def good_args(script, tmp_path, ext):
    return [a.format(tmp=tmp_path / "out", ext=ext) for a in FIRST[script][1]]


def bad_value(typ):
    if typ in BAD:
        return BAD[typ]
    if typ.startswith("words:"):
        return "1 " + bad_value(typ[6:])
    if "|" in typ or typ.startswith("re:"):
        return "bogus"
    if typ.startswith("int>="):
        return str(int(typ[5:]) - 1)
    return None  # text: every value is good


def run(script, tmp_path, args=(), env=None, needle=(), modes=("jobs",)):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    e = {**FIRST[script][2], "WORKDIR": str(work), **(env or {})}
    for mode in modes:  # the job list, the dry run for people, a real run: all refused alike
        line = precheck_refused(["bash", os.path.join(ROOT, "scripts", script), *args], dict(e, DRY_RUN=mode),
                                cwd=str(tmp_path), needle=needle)
        assert line.startswith(f"error: {os.path.join(ROOT, 'scripts', script)}: ") or "job s" in line, line
    return line


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bad_flag_is_refused_naming_the_job_and_the_flag(tmp_path, ext, script):
    args, (_, rest, _) = good_args(script, tmp_path, ext), declarations(os.path.join(ROOT, "scripts", script))
    args = all_args(script, tmp_path, ext) if rest else []
    line = run(script, tmp_path, [*args, "--bogus_flag", "3"], needle=["--bogus_flag"])
    if rest:  # passed through to every job of that program: the first one is named, with the fix (its -h)
        assert "unrecognized arguments: --bogus_flag 3" in line and re.search(r"job s\d\d-001-", line) and " -h " in line
    else:  # a script without EXTRA flags: the flag is where its argument goes
        assert "usage: bash" in line


def all_args(script, tmp_path, ext):
    """Every positional argument of the script, with a good value."""
    if script in ("main_job.sh", "yoco_fashion.sh"):
        return [str(tmp_path / "out")]
    if script.startswith("mdc_table"):
        return ([str(ext)] if script == "mdc_table2.sh" else []) + ["cifar10", "3"]
    return (["cifar10"] if script == "yoco_table1.sh" else []) + ["reproduce_1"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_stray_positional_word_is_refused(tmp_path, ext, script):
    args = all_args(script, tmp_path, ext)
    assert len(args) == len(declarations(os.path.join(ROOT, "scripts", script))[0])
    line = run(script, tmp_path, [*args, "stray"], needle=["'stray'", "drop it", "usage: bash"])
    assert f"unexpected argument {len(args) + 1}" in line


def switch_cases():
    out = []
    for script in SCRIPTS:
        args, _, env = declarations(os.path.join(ROOT, "scripts", script))
        for name, typ in sorted(env.items()):
            if name != "DRY_RUN" and bad_value(typ) is not None:
                out.append((script, "env", name, typ))
        for i, (name, typ) in enumerate(args):
            if bad_value(typ) is not None:
                out.append((script, i, name, typ))
    return out


@pytest.mark.parametrize("script,where,name,typ", switch_cases(),
                         ids=[f"{c[0]}-{c[2]}" for c in switch_cases()])
def test_every_switch_and_argument_with_a_bad_value_is_refused(tmp_path, ext, script, where, name, typ):
    value = bad_value(typ)
    if where == "env":
        run(script, tmp_path, good_args(script, tmp_path, ext), {name: value}, needle=[f"{name}={value!r}"])
    else:
        args = all_args(script, tmp_path, ext)
        args[where] = value
        run(script, tmp_path, args, needle=[f"{name}={value!r}", f"argument {where + 1}"])


def test_dry_run_refuses_bad_values_of_every_kind(tmp_path):
    """The audit's examples, each with its message."""
    run("mdc_table3.sh", tmp_path, ["fashion", "4", "--bogus_flag", "3"], modes=("jobs", "1", "0"),
        needle=["job s01-001-condense_reg", "unrecognized arguments: --bogus_flag 3", "python condense_reg.py -h"])
    run("yoco_table1.sh", tmp_path, ["cifar10"], {"DEVICE": "gpu"}, needle=["DEVICE='gpu'", "auto, cpu, cuda"])
    run("yoco_table1.sh", tmp_path, ["cifar10"], {"PAIRS": "10:x"}, needle=["PAIRS='10:x'", "IPC_F > IPC_T"])
    run("yoco_table1.sh", tmp_path, ["cifar10", "stray"], needle=["REPRODUCE_EXP='stray'", "reproduce_"])
    run("mdc_table3.sh", tmp_path, ["fashion", "4", "--mls_select", "best"], needle=["invalid choice: 'best'"])
    run("mdc_table3.sh", tmp_path, ["fashion", "1"], needle=["N='1'", "an integer >= 2"])


def sweep(tmp_path, *flags, env=None, needle=()):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    e = {"WORKDIR": str(work), "PYTHONPATH": ROOT, **(env or {})}
    return precheck_refused([sys.executable, "-m", "utils.sweep", os.path.join(ROOT, "scripts", "mdc_table3.sh"),
                             *flags], e, cwd=str(tmp_path), needle=needle)


def test_the_sweep_starts_nothing_for_a_bad_job(tmp_path):
    sweep(tmp_path, "--gpus", "cpu", "--", "fashion", "4", "--bogus_flag", "3",
          needle=["job s01-001-condense_reg", "unrecognized arguments: --bogus_flag 3", "-h lists the options"])


@pytest.mark.parametrize("gpus,needle", [("abc", "'abc' is not a GPU id"), ("-1", "'-1' is not a GPU id"),
                                          ("0,0", "GPU 0 is listed twice"), ("0,,1", "give GPU ids")])
def test_the_sweep_refuses_bad_gpu_ids(tmp_path, gpus, needle):
    sweep(tmp_path, "--gpus", gpus, "--", "fashion", "4", needle=[needle, "--gpus"])


def test_the_sweep_refuses_a_gpu_the_machine_does_not_have(tmp_path):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aaa)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-bbb)'\n")
    smi.chmod(0o755)
    path = f"{smi.parent}:{os.environ['PATH']}"
    sweep(tmp_path, "--gpus", "1,2", "--", "fashion", "4", env={"PATH": path},
          needle=["GPU 2 is not on this machine", "0, 1"])


def test_every_script_declares_its_arguments():
    for script in SCRIPTS:
        args, rest, _ = declarations(os.path.join(ROOT, "scripts", script))
        assert args or rest, f"{script} has no '#: arg' or '#: rest' line"
