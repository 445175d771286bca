"""The shared command line of every script (the ``argument.py`` of the references he-y/Multisize-Dataset-Condensation
and he-y/you-only-condense-once; docs/algorithms.md#derived-settings).

Nothing is parsed at import time and nothing here imports torch. ``cli.options`` declares the reference
flags (same names, types and defaults, so existing shell scripts keep working) plus ours; ``parse_args``
applies the ``--reproduce`` presets as *parser defaults* (an explicit flag always wins) and then the
reference's derived settings (MDC reference argument.py, tune_lr_img and ipc_epoch;
docs/algorithms.md#derived-settings), again only where the user gave no value.

Every top-level script follows the torchvision-references shape: ``get_args_parser()`` builds the
parser, ``main(args)`` does the work, and ``cli(main, get_args_parser)`` runs it from the shell.
"""
import argparse
import os
import re
import signal
import sys

import yaml

from utils import ranges
from utils.errors import StopTraining, UserError


def str2bool(v):
    """The reference's boolean flags: ``--flag True``/``--flag False`` (and yes/no, 1/0)."""
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "t", "yes", "y", "1"):
        return True
    if s in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {v!r}")


DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "fashion", "imagenet")
PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "reproduce.yaml")


def explicit_dests(parser, argv):
    """The ``dest`` of every option the user typed (so derived defaults never override them)."""
    saved = [(act, act.default) for act in parser._actions]
    for act, _ in saved:
        act.default = argparse.SUPPRESS
    try:
        ns, _ = parser.parse_known_args(argv)
    finally:
        for act, d in saved:
            act.default = d
    return set(vars(ns))


def _rule_matches(cond, ns):
    for key, want in cond.items():
        if key.endswith("_min"):
            if getattr(ns, key[:-4]) < want:
                return False
        elif isinstance(want, list):
            if getattr(ns, key) not in want:
                return False
        elif getattr(ns, key) != want:
            return False
    return True


def preset_values(ns, path=PRESETS):
    """Merge every matching rule of the preset file, in file order (MDC reference misc/reproduce.py, set_arguments)."""
    fix = "pass --presets with a file laid out as configs/reproduce.yaml"
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"cannot read the preset file {path} ({e.strerror}); {fix}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"the preset file {path} is not valid YAML{at}; {fix}") from None
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list) or not all(isinstance(r, dict) and isinstance(r.get("set"), dict)
                                              and isinstance(r.get("if", {}), dict) for r in rules):
        raise UserError(f"the preset file {path} needs a list 'rules' of {{if: {{...}}, set: {{...}}}} entries; {fix}")
    out = {}
    for r in rules:
        try:
            hit = _rule_matches(r.get("if", {}), ns)
        except AttributeError as e:
            raise UserError(f"the preset file {path} tests an unknown setting ({e.name}); {fix}") from None
        if hit:
            out.update(r["set"])
    return out


def parse_args(parser, argv=None):
    """Parse ``argv`` and resolve the reference's derived settings, explicit flags winning."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    explicit = explicit_dests(parser, argv)
    check_contradictions(parser, args, explicit, argv)  # two switches of one setting that disagree
    if not hasattr(args, "dataset") or not hasattr(args, "reproduce"):  # a script with its own parser
        ranges.check(parser, args)
        return args
    if args.reproduce or args.reproduce_condense:
        preset = {k: v for k, v in preset_values(args, args.presets).items() if k not in explicit}
        unknown = sorted(set(preset) - set(vars(args)))
        if unknown:
            raise UserError(f"the preset file {args.presets} sets unknown options ({', '.join(unknown)}); "
                            "use the dest names of the command line flags")
        parser.set_defaults(**preset)
        args = parser.parse_args(argv)
    ranges.check(parser, args)  # every numeric option in its declared range, before any work
    args.explicit = sorted(explicit)
    resolve(args, explicit)
    check_together(args)
    return args


def _pruning_setting(args, dest):
    """The value ``--pruning_key`` gives the reference's flag ``dest`` (``use_hard``, ``balance``,
    ``random_selection``; YOCO reference argument.py, its pruning-key block), or None for a key the later checks
    refuse anyway."""
    from yoco.registry import accepted_keys, rule_of

    found = accepted_keys().get(str(args.pruning_key))
    if found is None:
        return None
    base, modifiers = found
    if dest == "random_selection":
        return rule_of(base).flag == "random_selection"
    return {"use_hard": base.hard, "balance": base.balance, **(modifiers if base.modifiers else {})}[dest]


# Pairs of switches that set one thing (an alias of the reference's and ours, or a switch and the setting it
# turns off): (dest a, dest b, do the values disagree?, the fix). Checked only where both were typed, or where b
# is ``pruning_key``, whose default decides as much as a typed key (docs/failures.md#contradictory-switches-are-refused).
CONTRADICTIONS = (
    ("use_aim", "tracker", lambda a: a.use_aim != (a.tracker == "aim"),
     "pass one of them: --tracker aim (or --use_aim True) tracks to Aim, --tracker none (or --use_aim False) "
     "tracks nothing"),
    ("folder_lock", "lock_wait", lambda a: not a.folder_lock and a.lock_wait != 0,
     "without the lock there is nothing to wait for: leave out {b}, or keep the lock ({a} True)"),
    ("eval_during", "eval_epochs", lambda a: not a.eval_during,
     "{b} sets the epochs of the in-run evaluations that {a} False turns off: leave out one of them"),
    ("test", "eval_during", lambda a: a.test and a.eval_during,
     "{a} runs no in-run evaluations: leave out {b} True, or {a}"),
    ("iterations", "epochs", lambda a: True,
     "{a} sets the number of epochs (whole epochs of at least that many iterations): pass one of them"),
    *((k, "pruning_key", lambda a, k=k: getattr(a, k) and _pruning_setting(a, k) is False,
       "the key sets it (as the reference's argument.py): leave out {a}, or pass a --pruning_key that sets it")
      for k in ("use_hard", "balance", "random_selection")),
    *((f"load_{k}", "condense_key", lambda a, k=k: getattr(a, f"load_{k}") and a.condense_key != k,
       f"the reference sets {{a}} from {{b}}: pass {{b}} {k} (and leave out {{a}})") for k in ("mtt", "dsa", "kip")),
)


def _typed(parser, dest, argv):
    """The option string of ``dest`` as the user typed it (an alias too), else its first long one."""
    strings = next((act.option_strings for act in parser._actions if act.dest == dest), [])
    typed = [o for o in strings if any(t == o or t.startswith(o + "=") for t in argv)]
    return (typed or [o for o in strings if o.startswith("--")] or strings)[0]


def _shown(parser, args, dest, argv):
    flag, value = _typed(parser, dest, argv), getattr(args, dest)
    act = next(act for act in parser._actions if act.dest == dest)
    return flag if act.nargs == 0 else f"{flag} {value}"


def check_contradictions(parser, args, explicit, argv=()):
    """Refuse two switches of one setting that disagree (``CONTRADICTIONS``), naming both, before any work;
    consistent duplicates (``--tracker aim --use_aim True``) are accepted."""
    for a, b, disagree, fix in CONTRADICTIONS:
        if not (hasattr(args, a) and hasattr(args, b)) or a not in explicit:
            continue
        if b not in explicit and b != "pruning_key":
            continue
        if disagree(args):
            fa, fb = _typed(parser, a, argv), _typed(parser, b, argv)
            raise UserError(f"{_shown(parser, args, a, argv)} and {_shown(parser, args, b, argv)} contradict each "
                            f"other; {fix.format(a=fa, b=fb)}")


def _default(args, explicit, key, value):
    if key not in explicit:
        setattr(args, key, value)


def _refuse_explicit(explicit, key, message):
    """The reference replaces this setting here: an explicit request for it is refused, never replaced."""
    if key in explicit:
        raise UserError(message)


def check_nclass_sub(k, nclass):
    """``--nclass_sub k`` of class-partitioned runs (condense_reg_mp.py, ``test.py -s idc_cat``, MDC reference
    condense_reg_mp.py; docs/algorithms.md#class-partitioned-condensation)
    must divide ``--nclass`` so that every class is condensed exactly once."""
    allowed = [d for d in range(1, nclass + 1) if nclass % d == 0]
    if k not in allowed:
        raise UserError(f"--nclass_sub {k}: it is the number of classes each partition (one process) condenses "
                        f"and must divide --nclass {nclass} so that every class is condensed once; "
                        f"use one of {', '.join(map(str, allowed))}")


# The reference's ``-s`` hooks (its argument.py, inside the CIFAR block, after the --reproduce presets and
# before the factor/init, epoch and DSA-strategy derivations): settings of the sets other methods condensed.
SOURCE_HOOKS = {
    "dsa": {"factor": 1, "mixup": "vanilla"},
    "dc": {"factor": 1, "mixup": "vanilla", "dsa": False},
    "mtt": {"factor": 1},
    "dream": {"batch_real": 128},
}
_HOOK_FLAGS = {"factor": "-f/--factor", "mixup": "--mixup", "dsa": "--dsa", "batch_real": "--batch_real"}


def _source_hook(args, explicit):
    """Apply the ``-s`` hook of ``SOURCE_HOOKS`` as derived defaults (an explicit flag wins, with a note on
    stderr); the values applied are kept in ``args.source_hook`` (saved with the run's / evaluation's args)."""
    for key, value in SOURCE_HOOKS.get(args.slct_type, {}).items():
        if key in explicit:
            if getattr(args, key) != value:
                print(f"note: -s {args.slct_type}: the reference uses {_HOOK_FLAGS[key]} {value} for these sets; "
                      f"the explicit {_HOOK_FLAGS[key]} {getattr(args, key)} is kept", file=sys.stderr)
            continue
        setattr(args, key, value)
        args.source_hook[key] = value


def ipc_epoch(ipc, factor, nclass=10, bound=-1):
    """ImageNet evaluation epochs from the decoded count (MDC reference argument.py, ipc_epoch;
    docs/algorithms.md#derived-settings)."""
    n = ipc * factor**2
    if bound > 0:
        n = min(n, bound)
    e = 3000 if n == 1 else 2000 if n <= 10 else 1500 if n <= 50 else 1000 if n <= 200 else 500 if n <= 500 else 300
    if nclass == 100:
        e = int(e * 2 / 3) // 100 * 100
    return e


def eval_epochs(args, ipc):
    """The reference's evaluation epochs of a set of ``ipc`` stored images per class (MDC reference argument.py,
    ipc_epoch; docs/algorithms.md#derived-settings):
    ImageNet by decoded count (``ipc_epoch``, capped by batch_syn_max for ``bound`` decoding), every other
    dataset 1000 whatever the IPC."""
    if args.dataset != "imagenet":
        return 1000
    bound = args.batch_syn_max if args.decode_type == "bound" else -1
    return ipc_epoch(ipc, args.factor, args.nclass, bound)


def resolve(args, explicit=()):
    """Derived settings of docs/algorithms.md#derived-settings (MDC reference argument.py, tune_lr_img and ipc_epoch)
    (dataset block, tags, epochs, DSA strategy)."""
    explicit = set(explicit)
    d = args.dataset
    if d not in DATASETS:
        raise UserError(f"unknown dataset {d!r}; choose one of {', '.join(DATASETS)}")
    if args.run_name == "default_run":
        args.run_name = f"{d}_ipc{args.ipc}"
    args.nch = 3
    args.source_hook = {}
    if d != "imagenet":  # the dataset fixes both (the reference sets them without a word)
        size, nclass = (28, 10) if d in ("mnist", "fashion") else (32, 100 if d == "cifar100" else 10)
        for key, flag, value in (("size", "--size", size), ("nclass", "--nclass", nclass)):
            if getattr(args, key) != value:
                _refuse_explicit(explicit, key, f"{flag} {getattr(args, key)}: {d} has {value}; {flag} is for "
                                 "ImageNet subsets: leave it out")
    if d.startswith("cifar"):
        args.size, args.nclass = 32, (100 if d == "cifar100" else 10)
        _default(args, explicit, "mix_p", 0.5)
        _default(args, explicit, "dsa", True)
        _source_hook(args, explicit)
    elif d == "svhn":
        args.size, args.nclass = 32, 10
        _default(args, explicit, "mix_p", 0.5)
        _default(args, explicit, "dsa", True)
        _default(args, explicit, "dsa_strategy", args.dsa_strategy.replace("_flip", ""))
    elif d in ("mnist", "fashion"):
        args.size, args.nclass, args.nch = 28, 10, 1
        _default(args, explicit, "mix_p", 0.5)
        _default(args, explicit, "dsa", True)
        if d == "mnist":
            _default(args, explicit, "dsa_strategy", args.dsa_strategy.replace("_flip", ""))
    else:  # imagenet
        if args.net_type == "convnet":
            _refuse_explicit(explicit, "net_type", "-n convnet: on ImageNet the reference trains ResNetAP instead of "
                             "ConvNet; leave out -n/--net_type (or pass resnet_ap or another registry name)")
            args.net_type = "resnet_ap"
        _default(args, explicit, "size", 224)
        if args.nclass >= 100:
            args.load_memory = False
            _default(args, explicit, "lr", 0.1)
            _default(args, explicit, "weight_decay", 1e-4)
            _default(args, explicit, "batch_size", max(128, args.batch_size))
            _default(args, explicit, "batch_real", max(128, args.batch_real))
    # YOCO condense keys: mtt/dsa/kip are single-formation sets (YOCO reference utils/img_loader.py, load_data_path;
    # docs/algorithms.md#yoco-condensed-inputs)
    if args.condense_key in ("mtt", "dsa", "kip"):
        if args.factor != 1:
            _refuse_explicit(explicit, "factor", f"-f {args.factor}: --condense_key {args.condense_key} sets are "
                             "single-formation (no mosaics to decode); leave out -f/--factor")
        args.factor = 1
    args.datatag = d if d != "imagenet" else f"imagenet{args.nclass}" + (f"-seed{args.dseed}" if args.dseed else "")
    if args.net_type == "convnet":
        if args.depth > 4:
            _refuse_explicit(explicit, "depth", f"--depth {args.depth}: the reference builds ConvNet-3 for any depth "
                             "above 4; pass --depth 1 to 4")
            args.depth = 3
        args.f_idx = str(args.depth - 1) if "f_idx" not in explicit else args.f_idx
        args.modeltag = f"conv{args.depth}"
    elif args.net_type == "resnet_ap":
        args.modeltag = f"resnet{args.depth}ap"
    else:
        args.modeltag = f"{args.net_type}{args.depth}"
    if args.norm_type == "instance":
        args.modeltag += "in"
    if args.width != 1.0:
        args.modeltag += f"_w{args.width}"
    if args.factor > 1:
        if args.init != "mix":
            _refuse_explicit(explicit, "init", f"--init {args.init} with -f {args.factor}: multi-formation "
                             "initialises every tile from a real image (--init mix, forced as the reference); "
                             "leave out --init, or pass -f 1")
        args.init = "mix"  # MDC reference argument.py; docs/algorithms.md#derived-settings
    if not re.fullmatch(r"\d+(,-?\d+)?", args.f_idx):
        raise UserError(f"--f_idx {args.f_idx}: a feature layer index, or two as from,to (e.g. 2 or 1,3)")
    parts = [int(v) for v in args.f_idx.split(",")]
    args.idx_from, args.idx_to = parts[0], (parts[1] if len(parts) > 1 else -1)
    if args.adaptive_reg and "metric" not in explicit:
        args.metric = "mse"  # MDC forces mse (MDC reference argument.py; docs/algorithms.md#derived-settings)
    # evaluation epochs (MDC reference argument.py, ipc_epoch; docs/algorithms.md#derived-settings); an explicit
    # --epochs always wins. Prefix evaluations (test.py
    # cx_cy / baseline_b) take them from the full --ipc N as the reference (MDC reference test.py, test_data;
    # docs/evaluating.md#protocol), or from the
    # evaluated --ipcy y with --prefix_epochs subset; only ImageNet's epochs depend on the IPC.
    if args.ipc > 0 and "epochs" not in explicit:
        prefix = getattr(args, "test_type", "other") in ("cx_cy", "baseline_b") and getattr(args, "ipcy", -1) > 0
        subset = prefix and getattr(args, "prefix_epochs", "full") == "subset"
        args.epochs = eval_epochs(args, args.ipcy if subset else args.ipc)
    if args.mixup == "cut" and "dsa_strategy" not in explicit:
        args.dsa_strategy = args.dsa_strategy.replace("_cutout", "")
    args.augment = not args.dsa
    return args


AUG_OPS = ("flip", "color", "crop", "cutout", "scale", "rotate", "translate", "brightness", "saturation", "contrast")


def check_aug_strategy(strategy, flag="the augmentation"):
    """A DiffAug strategy (MDC reference misc/augment.py, DiffAug; docs/algorithms.md#augmentation): ``_``-joined ops of
    ``AUG_OPS``, or empty / ``none``; else a UserError."""
    if strategy == "" or strategy.lower() == "none":
        return
    for tok in strategy.lower().split("_"):
        if tok not in AUG_OPS:
            raise UserError(f"{flag} {strategy}: unknown op {tok!r}; use '_'-joined ops from flip, color, crop, "
                            "cutout, scale, rotate, translate (or none)")


def check_together(args):
    """Rules between options, checked once the dataset block has set the image size (before any work)."""
    check_aug_strategy(args.aug_type, "-a/--aug_type")
    check_aug_strategy(args.dsa_strategy, "--dsa_strategy")
    if args.factor > args.size // 2:  # multi-formation tiles of 1 pixel (or less) hold no image
        raise UserError(f"-f {args.factor}: a {args.size}-pixel image cannot hold {args.factor}x{args.factor} tiles "
                        f"of at least 2 pixels; use -f <= {args.size // 2} (1 = no multi-formation)")


class Terminated(KeyboardInterrupt):
    """A SIGTERM (Slurm's time limit, ``kill``'s default), raised in the main thread by ``cli``'s handler: it
    unwinds as Ctrl-C does (every ``finally`` runs: the tracker process is closed, the folder lock let go) and the
    script exits with 143 = 128 + SIGTERM (docs/failures.md#an-interruption-is-one-line)."""


_INTERRUPT = {"note": None, "argv": ()}  # what the work in progress keeps (``interrupt_note``), the command line


def interrupt_note(note):
    """Tell ``cli`` what the running work keeps and how to resume it, should it be interrupted now: ``note()``
    returns the text after ``interrupted; `` of the one line (read when the interruption comes, so it names the
    latest checkpoint), or ``note`` is None (nothing kept: re-run the same command). Returns the previous note."""
    previous, _INTERRUPT["note"] = _INTERRUPT["note"], note
    return previous


def rerun(flag, *aliases):
    """``re-run the same command with FLAG``, or ``re-run the same command`` when the command line has it (or
    one of its ``aliases``) already: the resume advice of an interruption."""
    if any(a in (flag, *aliases) for a in _INTERRUPT["argv"]):
        return "re-run the same command"
    return f"re-run the same command with {flag}"


def _interrupted_text():
    note = _INTERRUPT["note"]
    try:
        text = note() if note is not None else None
    except Exception:  # noqa: BLE001 -- the line must come whatever the work's state
        text = None
    return text or "nothing was kept; re-run the same command to start again"


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: a second one must not cut the cleanup short
    raise Terminated()


def cli(main, get_args_parser, argv=None):
    """Parse, run ``main(args)`` and turn a ``UserError`` into a one-line message and exit 2; Ctrl-C and SIGTERM
    into one line saying what was kept and how to resume (``interrupt_note``), exit 130 and 143."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding caller): its own signals stay its own
        previous = None
    _INTERRUPT["note"], _INTERRUPT["argv"] = None, tuple(sys.argv[1:] if argv is None else argv)
    try:
        return _run(main, get_args_parser, argv)
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        print(f"error: interrupted{' by SIGTERM' if term else ''}; {_interrupted_text()}", file=sys.stderr, flush=True)
        sys.exit(143 if term else 130)
    finally:
        _INTERRUPT["note"] = None
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(main, get_args_parser, argv):
    try:
        args = parse_args(get_args_parser(), argv)  # -h ends here, before torch is imported
        from utils.config import tune_allocator
        from tracking.client import check_tracker

        check_tracker(args)  # a tracker that is not installed: one line, before any work

        tune_allocator()
        if getattr(args, "deterministic", False):  # read by cuBLAS when it starts: set before any CUDA work
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except StopTraining as e:  # a diverged training run: the inputs are fine, the settings are not
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(3)
    except RuntimeError as e:  # strict --deterministic True met an operation without a deterministic kernel
        if "does not have a deterministic implementation" not in str(e):
            raise
        op = str(e).split(" does not have", 1)[0].strip().splitlines()[-1]
        print(f"error: --deterministic True: {op} has no deterministic kernel on this device; run with "
              "--deterministic False (or on the CPU)", file=sys.stderr)
        sys.exit(2)
