"""The shared command line of every script (the reference's ``argument.py``, spec mdc §1, yoco §6.1).

Nothing is parsed at import time. ``add_reference_args`` declares the reference flags (same names,
types and defaults, so existing shell scripts keep working) plus our additions; ``parse_args``
applies the ``--reproduce`` presets as *parser defaults* (an explicit flag always wins) and then the
reference's derived settings (spec mdc §1.2–§1.4), again only where the user gave no value.

Every top-level script follows the torchvision-references shape: ``get_args_parser()`` builds the
parser, ``main(args)`` does the work, and ``cli(main, get_args_parser)`` runs it from the shell.
"""
import argparse
import os
import sys

import yaml

from utils.config import UserError, str2bool, tune_allocator
from utils.train import StopTraining

DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "fashion", "imagenet")
PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "reproduce.yaml")


def add_reference_args(parser):
    """Flags of the reference ``argument.py`` (MDC and YOCO), then ours."""
    a = parser.add_argument
    a("-d", "--dataset", default="cifar10", type=str, help=f"one of {', '.join(DATASETS)}")
    a("--data_dir", default="datasets", type=str,
      help="torchvision dataset root (SVHN under <data_dir>/svhn); not ./data, which is our package")
    a("--imagenet_dir", default="datasets/imagenet", type=str, help="folder with train/ and val/")
    a("--download", action="store_true", help="let torchvision download a missing dataset")
    a("--nclass", default=10, type=int)
    a("--dseed", default=0, type=int, help="ImageNet class-subset seed (0 = class100.txt order)")
    a("--size", default=224, type=int)
    a("--phase", default=-1, type=int)
    a("--nclass_sub", default=-1, type=int)
    a("-l", "--load_memory", default=True, type=str2bool)
    # model
    a("-n", "--net_type", default="convnet", type=str)
    a("--norm_type", default="instance", type=str, choices=["batch", "instance", "sn", "none", "layer", "group"])
    a("--depth", default=10, type=int)
    a("--width", default=1.0, type=float)
    a("--eval_net", default="", type=str,
      help="evaluation architecture(s), comma separated registry names (default: the --net_type net)")
    # training / evaluation
    a("--epochs", default=1000, type=int)
    a("--batch_size", default=64, type=int)
    a("--lr", default=0.01, type=float)
    a("--momentum", default=0.9, type=float)
    a("--weight-decay", "--wd", dest="weight_decay", default=5e-4, type=float)
    a("--seed", default=123, type=int)
    a("--deterministic", default=False, type=str2bool, help="deterministic algorithms (bit-exact CPU reruns)")
    a("--device", default="auto", type=str, help="auto, cpu or cuda")
    a("--pretrained", action="store_true")
    a("--mixup", default="cut", type=str, choices=["vanilla", "cut"])
    a("--mixup_net", default="cut", type=str, choices=["vanilla", "cut"])
    a("--beta", default=1.0, type=float)
    a("--mix_p", default=1.0, type=float)
    a("-p", "--print-freq", dest="print_freq", default=10, type=int)
    a("--verbose", action="store_true")
    a("-j", "--workers", default=0, type=int, help="dataloader workers (per-sample ImageNet transforms only)")
    a("--save_ckpt", default=False, type=str2bool)
    a("--tag", default="", type=str)
    a("--test", action="store_true", help="debug: save to raid/results/test, skip evaluations")
    a("--time", action="store_true")
    # condensed data
    a("-i", "--ipc", default=-1, type=int)
    a("-f", "--factor", default=1, type=int)
    a("--decode_type", default="single", type=str, choices=["single", "multi", "bound"])
    a("--init", default="random", type=str, choices=["random", "noise", "mix"])
    a("-a", "--aug_type", default="color_crop_cutout", type=str)
    a("--match", default="grad", type=str, choices=["feat", "grad", "logit"])
    a("--metric", default="l1", type=str, choices=["mse", "l1", "l1_mean", "l2", "cos"])
    a("--after_softmax", default=False, type=str2bool)
    a("--per_logit", default=False, type=str2bool)
    a("--bias", default=False, type=str2bool)
    a("--fc", default=False, type=str2bool)
    a("--f_idx", default="4", type=str)
    a("--niter", default=500, type=int)
    a("--inner_loop", default=100, type=int)
    a("--early", default=0, type=int)
    a("--fix_iter", default=-1, type=int)
    a("--net_epoch", default=1, type=int)
    a("--n_data", default=500, type=int)
    a("--pt_from", default=-1, type=int)
    a("--pt_num", default=1, type=int)
    a("--batch_real", default=64, type=int)
    a("--batch_syn_max", default=128, type=int)
    a("--lr_img", default=5e-3, type=float)
    a("--mom_img", default=0.5, type=float)
    a("--reproduce", action="store_true", help="apply the presets of configs/reproduce.yaml")
    a("--reproduce_condense", action="store_true", help="YOCO's name for --reproduce (condense.py)")
    a("--presets", default=PRESETS, type=str, help=argparse.SUPPRESS)
    a("-s", "--slct_type", default="idc", type=str)
    a("--test_type", default="other", type=str)
    a("--repeat", default=1, type=int)
    a("--dsa", default=False, type=str2bool)
    a("--dsa_strategy", default="color_crop_cutout_flip_scale_rotate", type=str)
    a("--rrc", default=True, type=str2bool)
    a("--same_compute", default=False, type=str2bool)
    a("--name", default="", type=str)
    a("--start_idx", default=0, type=int)
    # MDC
    a("--adaptive_reg", default=False, type=str2bool, help="MDC's adaptive subset loss")
    a("--adaptive_period", default=100, type=int)
    a("--adaptive_class_wise", action="store_true")
    a("--ipcy", default=-1, type=int)
    a("--test_data_dir", default="", type=str)
    a("--interval", default=10, type=int)
    a("--dream_random_init", default="first", choices=["first", "picks"],
      help="-s dream with --init random (f = 1): 'first' = the first ipc real images of each class, ignoring "
           "the k-means picks (the reference); 'picks' = initialise from the DREAM picks (folder gets _picks)")
    a("--use_aim", default=False, type=str2bool, help="accepted for compatibility; aim is not used")
    a("--aim_repo", default=".aim", type=str)
    a("--run_name", default="default_run", type=str)
    a("--exp_name", default="MDC", type=str)
    a("--load_checkpoint", action="store_true", help="reference name of --resume")
    a("--resume", action="store_true", help="continue the run found in the save folder")
    a("--save_dir", default="", type=str, help="override the reference output folder")
    a("--eval_during", default=True, type=str2bool, help="in-run evaluations at save points")
    a("--eval_epochs", default=-1, type=int, help="epochs of in-run evaluations (default: the protocol's)")
    a("--results_file", default="", type=str, help="JSON record of test.py (default: in the evaluated folder)")
    a("--save_subset", default="", type=str, help="export the evaluated (decoded) training set as [data, targets]")
    # YOCO (spec yoco §6.1)
    a("--custom_data_dir", default="", type=str)
    a("--no_resnet", action="store_true")
    a("--aug_seed", default=0, type=int)
    a("--fix_seed", action="store_true")
    a("--no_aug", action="store_true")
    a("--resume_epoch", default=0, type=int)
    a("--pruning_key", default="yoco", type=str)
    a("--balance", action="store_true")
    a("--use_hard", action="store_true")
    a("--stratified_sampling", action="store_true")
    a("--random_selection", action="store_true")
    a("--score_file", default="", type=str)
    a("--strata_fixed_select", action="store_true")
    a("--strata_random_select", action="store_true")
    a("--prune_score", default=None, type=float)
    a("--prune_score_ratio", default=None, type=float)
    a("--ccs_type", default="ccs_1", type=str)
    a("--topk", default=10, type=int)
    a("--epoch", default=100, type=int, help=argparse.SUPPRESS)
    a("--condense_key", default="idc", type=str, choices=["idc", "dream", "mtt", "dsa", "kip"])
    a("--load_mtt", action="store_true")
    a("--load_dsa", action="store_true")
    a("--load_kip", action="store_true")
    a("--slct_ipc", default=0, type=int)
    a("--stop_epoch", default=100, type=int)
    a("--reproduce_exp", default="reproduce_3", type=str)
    a("--run_tag", default="", type=str)
    return parser


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
    """Merge every matching rule of the preset file, in file order (spec mdc §1.5)."""
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
    if not hasattr(args, "dataset") or not hasattr(args, "reproduce"):  # a script with its own parser
        return args
    explicit = explicit_dests(parser, argv)
    if args.reproduce or args.reproduce_condense:
        preset = {k: v for k, v in preset_values(args, args.presets).items() if k not in explicit}
        unknown = sorted(set(preset) - set(vars(args)))
        if unknown:
            raise UserError(f"the preset file {args.presets} sets unknown options ({', '.join(unknown)}); "
                            "use the dest names of the command line flags")
        parser.set_defaults(**preset)
        args = parser.parse_args(argv)
    if args.factor < 1:
        raise UserError(f"-f/--factor must be >= 1 (got {args.factor}): 1 = no multi-formation, f = f x f mosaics")
    args.explicit = sorted(explicit)
    resolve(args, explicit)
    return args


def _default(args, explicit, key, value):
    if key not in explicit:
        setattr(args, key, value)


def check_nclass_sub(k, nclass):
    """``--nclass_sub k`` of class-partitioned runs (condense_reg_mp.py, ``test.py -s idc_cat``, spec mdc §10)
    must divide ``--nclass`` so that every class is condensed exactly once."""
    allowed = [d for d in range(1, nclass + 1) if nclass % d == 0]
    if k not in allowed:
        raise UserError(f"--nclass_sub {k}: it is the number of classes each partition (one process) condenses "
                        f"and must divide --nclass {nclass} so that every class is condensed once; "
                        f"use one of {', '.join(map(str, allowed))}")


def ipc_epoch(ipc, factor, nclass=10, bound=-1):
    """ImageNet evaluation epochs from the decoded count (spec mdc §1.3)."""
    n = ipc * factor**2
    if bound > 0:
        n = min(n, bound)
    e = 3000 if n == 1 else 2000 if n <= 10 else 1500 if n <= 50 else 1000 if n <= 200 else 500 if n <= 500 else 300
    if nclass == 100:
        e = int(e * 2 / 3) // 100 * 100
    return e


def resolve(args, explicit=()):
    """Derived settings of spec mdc §1.2–§1.4 (dataset block, tags, epochs, DSA strategy)."""
    explicit = set(explicit)
    d = args.dataset
    if d not in DATASETS:
        raise UserError(f"unknown dataset {d!r}; choose one of {', '.join(DATASETS)}")
    if args.run_name == "default_run":
        args.run_name = f"{d}_ipc{args.ipc}"
    args.nch = 3
    if d.startswith("cifar"):
        args.size, args.nclass = 32, (100 if d == "cifar100" else 10)
        _default(args, explicit, "mix_p", 0.5)
        _default(args, explicit, "dsa", True)
        if args.slct_type == "dream":
            _default(args, explicit, "batch_real", 128)
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
            args.net_type = "resnet_ap"
        _default(args, explicit, "size", 224)
        if args.nclass >= 100:
            args.load_memory = False
            _default(args, explicit, "lr", 0.1)
            _default(args, explicit, "weight_decay", 1e-4)
            _default(args, explicit, "batch_size", max(128, args.batch_size))
            _default(args, explicit, "batch_real", max(128, args.batch_real))
    # YOCO condense keys: mtt/dsa/kip are single-formation sets (spec yoco §1.2)
    if args.condense_key in ("mtt", "dsa", "kip"):
        args.factor = 1
    args.datatag = d if d != "imagenet" else f"imagenet{args.nclass}" + (f"-seed{args.dseed}" if args.dseed else "")
    if args.net_type == "convnet":
        if args.depth > 4:
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
        args.init = "mix"  # spec mdc §1.2 item 6
    parts = [int(v) for v in args.f_idx.split(",")]
    args.idx_from, args.idx_to = parts[0], (parts[1] if len(parts) > 1 else -1)
    if args.adaptive_reg and "metric" not in explicit:
        args.metric = "mse"  # MDC forces mse (spec mdc §1.2 item 7)
    # evaluation epochs (spec mdc §1.3); an explicit --epochs always wins
    if args.ipc > 0 and "epochs" not in explicit:
        if d == "imagenet":
            bound = args.batch_syn_max if args.decode_type == "bound" else -1
            args.epochs = ipc_epoch(args.ipc, args.factor, args.nclass, bound)
        else:
            args.epochs = 1000
    if args.mixup == "cut" and "dsa_strategy" not in explicit:
        args.dsa_strategy = args.dsa_strategy.replace("_cutout", "")
    args.augment = not args.dsa
    return args


def cli(main, get_args_parser, argv=None):
    """Parse, run ``main(args)`` and turn a ``UserError`` into a one-line message and exit 2."""
    tune_allocator()
    try:
        args = parse_args(get_args_parser(), argv)
        return main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except StopTraining as e:  # a diverged training run: the inputs are fine, the settings are not
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command with --resume to continue", file=sys.stderr)
        sys.exit(130)
