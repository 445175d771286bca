"""Every numeric option of every script declares its valid range (utils/ranges.py), and the check refuses
values outside it, and every non-finite float, through the parser of each script."""
import importlib

import pytest

from utils.errors import UserError
from utils.ranges import Range, check

SCRIPTS = ["test", "condense_reg", "condense_reg_mp", "condense", "get_training_dynamics",
           "generate_importance_score", "data.partitions"]


def parsers():
    for name in SCRIPTS:
        yield name, importlib.import_module(name).get_args_parser()


@pytest.mark.parametrize("text,inside,outside", [
    (">= 1", [1, 7], [0, -1]), ("> 0", [1e-9, 3.0], [0, -0.1]), ("[0, 1]", [0, 0.5, 1], [-0.01, 1.01]),
    ("[0, 1)", [0, 0.99], [1, -1]), ("-1 or >= 1", [-1, 1, 9], [0, -2]), ("-1", [-1], [0, 1]),
    ("any", [-5, 0, 1e30], []), (">= 0", [0, 3], [-1]),
])
def test_range_texts(text, inside, outside):
    r = Range(text)
    assert str(r) == text
    assert all(v in r for v in inside) and not any(v in r for v in outside)


@pytest.mark.parametrize("script,parser", list(parsers()), ids=SCRIPTS)
def test_every_numeric_option_declares_its_range(script, parser):
    """No int or float option without ``valid=``; every default lies in its range, except the options a script
    needs from the user (condense --ipc, condense_reg_mp.py --nclass_sub), whose message then says so."""
    numeric = [a for a in parser._actions if a.type in (int, float)]
    assert numeric
    missing = [a.option_strings[-1] for a in numeric if getattr(a, "valid", None) is None]
    assert not missing, f"{script}: numeric options without a declared range: {missing}"
    needed = {("condense_reg", "ipc"), ("condense_reg_mp", "ipc"), ("condense", "ipc"), ("condense_reg_mp", "nclass_sub")}
    for a in numeric:
        if a.default is not None and (script, a.dest) not in needed:
            assert a.default in a.valid, (script, a.dest, a.default, str(a.valid))


def _parse(parser, argv):
    args = parser.parse_args(argv)
    check(parser, args)
    return args


@pytest.mark.parametrize("script,argv,needle", [
    ("test", ["--lr", "-0.1"], "--lr -0.1 is out of range: pass a value > 0"),
    ("test", ["--lr", "nan"], "--lr nan: not a finite number"),
    ("test", ["--momentum", "-1"], "--momentum -1.0 is out of range"),
    ("test", ["--batch_size", "0"], "--batch_size 0 is out of range: pass a value >= 1"),
    ("test", ["--width", "0"], "--width 0.0 is out of range: pass a value > 0"),
    ("test", ["--beta", "0"], "--beta 0.0 is out of range"),
    ("test", ["--ipc", "0"], "--ipc 0 is out of range: pass a value -1 or >= 1"),
    ("test", ["--ipc", "-5"], "--ipc -5 is out of range"),
    ("test", ["--mix_p", "1.5"], "--mix_p 1.5 is out of range: pass a value [0, 1]"),
    ("test", ["--weight-decay", "inf"], "--weight-decay inf: not a finite number"),
    ("test", ["--prune_score_ratio", "1"], "--prune_score_ratio 1.0 is out of range: pass a value [0, 1)"),
    ("condense_reg", ["--ipc", "2", "--batch_real", "0"], "--batch_real 0 is out of range"),
    ("condense_reg", ["--ipc", "2", "--batch_syn_max", "0"], "--batch_syn_max 0 is out of range"),
    ("condense_reg", ["--ipc", "2", "--lr_img", "-0.001"], "--lr_img -0.001 is out of range"),
    ("condense_reg", [], "--ipc is needed (its default -1 is not valid here): pass a value >= 1"),
    ("condense_reg_mp", ["--ipc", "2", "--phase", "-3"], "--phase -3 is out of range"),
    ("get_training_dynamics", ["--epochs", "0"], "--epochs 0 is out of range"),
    ("get_training_dynamics", ["--lr=-inf"], "--lr -inf: not a finite number"),
    ("generate_importance_score", ["--batch-size", "0"], "--batch-size 0 is out of range"),
    ("data.partitions", ["b", "--nclass_sub", "0", "--nclass", "10"], "--nclass_sub 0 is out of range"),
])
def test_out_of_range_values_are_refused(script, argv, needle):
    parser = importlib.import_module(script).get_args_parser()
    with pytest.raises(UserError) as e:
        _parse(parser, argv)
    assert needle in str(e.value), str(e.value)


def test_values_in_range_pass():
    parser = importlib.import_module("test").get_args_parser()
    args = _parse(parser, ["--lr", "0.05", "--momentum", "0", "--ipc", "-1", "--mix_p", "1", "--seed", "0"])
    assert args.lr == 0.05 and args.ipc == -1


def test_the_augmentation_op_list_is_the_one_diffaug_knows():
    from cli.arguments import AUG_OPS
    from training.augment import GROUPS, OPS

    assert set(AUG_OPS) == set(OPS) | set(GROUPS)
