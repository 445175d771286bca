"""``-h`` of every script: instant (torch is not imported), only the groups the script uses, every shown
option described, example commands at the end."""
import argparse
import importlib
import os
import subprocess
import sys

import pytest

from conftest import ROOT

GROUP = {  # a word of each group title of cli/options.py and cli/yoco_options.py
    "data": "data: the real dataset", "condense": "condensation (IDC", "mdc": "MDC: the adaptive subset loss",
    "yoco": "YOCO: pruning", "protocol": "evaluation protocol", "output": "run and output",
    "set": "condensed set", "compat": "accepted for compatibility",
}
SCRIPTS = {  # script: (groups it shows, groups it must not show)
    "test.py": ({"data", "protocol", "set", "yoco", "output", "compat"}, {"condense", "mdc"}),
    "condense_reg.py": ({"data", "protocol", "set", "condense", "mdc", "output", "compat"}, {"yoco"}),
    "condense.py": ({"data", "condense", "mdc", "output", "compat"}, {"yoco"}),
    "condense_reg_mp.py": ({"data", "condense", "mdc", "output", "compat"}, {"yoco"}),
    "get_training_dynamics.py": ({"set", "compat"}, {"condense", "mdc", "yoco", "data"}),
    "generate_importance_score.py": ({"set", "compat"}, {"condense", "mdc", "yoco", "data"}),
}

PROBE = """
import contextlib, io, runpy, sys
sys.argv = [{script!r}, "-h"]
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        runpy.run_path({path!r}, run_name="__main__")
except SystemExit as e:
    code = e.code
sys.stdout.write(out.getvalue())
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH", code)
"""


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_is_instant_and_shows_only_the_scripts_groups(script):
    path = os.path.join(ROOT, script)
    p = subprocess.run([sys.executable, "-c", PROBE.format(script=script, path=path)], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert p.returncode == 0, p.stderr
    text, last = p.stdout.rsplit("\n", 2)[0], p.stdout.strip().splitlines()[-1]
    assert last in ("NO_TORCH 0", "NO_TORCH None"), f"{script} -h imported torch or failed: {last}"
    shown, hidden = SCRIPTS[script]
    for g in shown:
        assert GROUP[g] in text, f"{script} -h lacks the group {GROUP[g]!r}"
    for g in hidden:
        assert GROUP[g] not in text, f"{script} -h shows the group {GROUP[g]!r}"
    assert "examples:" in text and "§" not in text  # no citation of a document outside the repository


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_shown_option_is_described(script):
    parser = importlib.import_module(script[:-3]).get_args_parser()
    for act in parser._actions:
        if act.dest != "help" and act.help != argparse.SUPPRESS:
            assert act.help and len(act.help) > 8, f"{script}: {act.option_strings} has no description"


def test_compat_flags_are_listed_and_still_accepted():
    """test.py lists the condensation flags as compatibility flags and still parses them."""
    from test import get_args_parser

    parser = get_args_parser()
    compat = next(g for g in parser._action_groups if g.title.startswith(GROUP["compat"]))
    for flag in ("--lr_img", "--adaptive_reg", "--inner_loop", "--aug_seed"):
        assert flag in compat.description
    assert "--use_aim" not in compat.description  # it tracks the evaluation (tracking/client.py)
    args = parser.parse_args(["--lr_img", "0.1", "--adaptive_reg", "True", "--use_aim", "False"])
    assert args.lr_img == 0.1 and args.adaptive_reg is True and args.use_aim is False


def test_sweep_runs_as_its_package_and_under_its_old_name():
    """``python -m sweep`` (sweep/__main__.py) and the documented ``python -m utils.sweep`` (a one-line alias)
    print the same help, without importing torch."""
    probe = ("import runpy, sys\nsys.argv = ['x', '-h']\ntry:\n    runpy.run_module({m!r}, run_name='__main__', "
             "alter_sys=True)\nexcept SystemExit as e:\n    print('EXIT', e.code, 'torch' in sys.modules)\n")
    outs = []
    for m in ("sweep", "utils.sweep"):
        p = subprocess.run([sys.executable, "-c", probe.format(m=m)], capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
        assert p.stdout.strip().endswith("EXIT 0 False"), (m, p.stdout[-500:], p.stderr[-500:])
        outs.append(p.stdout)
    assert outs[0] == outs[1] and "python -m sweep" in outs[0]
