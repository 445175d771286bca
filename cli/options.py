"""The reference command line (its ``argument.py``, shared by MDC's and YOCO's scripts), described.

Every script accepts every reference flag with the reference's name, type and default, so existing
shell scripts keep working. ``-h`` shows only what the script uses, in named groups, each option with
a one-line description and its default, then example commands; the flags a script accepts only for
compatibility are listed by name in one group that says so. Nothing here imports torch: ``-h`` is
instant (the scripts import their work modules inside ``main``).

Scripts (``kind``): ``condense`` (condense_reg.py, condense.py), ``mp`` (condense_reg_mp.py: condense +
class partitions), ``test`` (test.py).
"""
import argparse
import textwrap
from collections.abc import Sequence

from cli.arguments import DATASETS, PRESETS, str2bool
from condensation import mls
from utils.ranges import ranged
from tracking.client import TRACKERS
from yoco.selection import DEFAULT_PRUNING_KEY, pruning_key_help

C, M, T = "condense", "mp", "test"
ALL, COND = frozenset((C, M, T)), frozenset((C, M))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every described option ends with its default (unless its text already names one, or it is a plain
    on/off switch or an empty string); the description and the examples keep their line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text or d is None or d is argparse.SUPPRESS or d == "" or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)"


GROUPS = {
    "data": "data: the real dataset",
    "model": "model: the network that condenses and is evaluated",
    "protocol": "evaluation protocol: training fresh networks on a condensed set (test.py and in-run evaluations)",
    "set": "condensed set: images per class, multi-formation, source",
    "condense": "condensation (IDC gradient matching, multi-formation)",
    "mdc": "MDC: the adaptive subset loss",
    "yoco": "YOCO: pruning the condensed set to IPC_T (--slct_ipc)",
    "parallel": "parallel condensation: class partitions over torchrun ranks (docs/parallel.md)",
    "speed": "speed: arithmetic and batching (docs/speed.md)",
    "output": "run and output",
    "tracking": "experiment tracking: Aim (the reference's) or TensorBoard (docs/tracking.md)",
}


class _NumberKeys(Sequence):
    """The settings that change the condensed numbers: a resumed run, and the partitions merged into one set
    (data/partitions.py), must match them exactly. The MLS part (the switches and every hyper-parameter of a
    registered rule or measure, ``condensation.mls.number_keys``) is read from the registry each time, so a
    rule registered later (a test's own) is compared on resume too."""
    BEFORE = (
        "dataset", "nclass", "dseed", "size", "nch", "net_type", "norm_type", "depth", "width", "lr",
        "momentum", "weight_decay", "seed", "mixup_net", "beta", "mix_p", "ipc", "factor", "decode_type",
        "init", "aug_type", "match", "metric", "bias", "fc", "f_idx", "niter", "inner_loop", "early",
        "fix_iter", "net_epoch", "n_data", "batch_real", "batch_syn_max", "lr_img", "mom_img", "slct_type",
        "start_idx", "adaptive_reg", "adaptive_period", "adaptive_class_wise", "interval", "nclass_sub",
        "phase", "test", "pt_from", "dream_random_init")
    AFTER = ("exact", "global_mls", "coast", "precision", "class_batch")

    def keys(self):
        return self.BEFORE + mls.number_keys() + self.AFTER

    def __getitem__(self, i):
        return self.keys()[i]

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, k):
        return k in self.keys()

    def __repr__(self):
        return repr(self.keys())


NUMBER_KEYS = _NumberKeys()


CONDENSE_KEYS = ("idc", "dream", "mtt", "dsa", "kip")  # YOCO's --condense_key: which method made the set


class _Adder:
    """Adds each option to its group when the script uses it, hidden otherwise (accepted, not shown).
    ``valid``: the range of a numeric option (``utils.ranges``), or a dict of ranges by script kind."""

    def __init__(self, parser, kind):
        self.parser, self.kind, self.groups = parser, kind, {}

    def __call__(self, group, used_by, *flags, help, valid=None, **kw):
        valid = valid.get(self.kind, "any") if isinstance(valid, dict) else valid
        if self.kind in used_by:
            if group not in self.groups:
                self.groups[group] = self.parser.add_argument_group(GROUPS[group])
            text = help.get(self.kind) if isinstance(help, dict) else help
            ranged(self.groups[group].add_argument)(*flags, help=text, valid=valid, **kw)
        else:
            ranged(self.parser.add_argument)(*flags, help=argparse.SUPPRESS, valid=valid, **kw)


def compat_group(parser, internal=("--presets",)):
    """One group listing, by name, every hidden flag of ``parser`` (accepted only so that the reference's
    command lines keep working) but the ``internal`` ones; returns the parser."""
    names = sorted(next(o for o in act.option_strings if o.startswith("--")) for act in parser._actions
                   if act.help == argparse.SUPPRESS and not set(act.option_strings) & set(internal))
    parser.add_argument_group("accepted for compatibility with the reference's command lines (no effect in this "
                              "script)", textwrap.fill(", ".join(names), width=100))
    return parser


def add_reference_args(parser, kind=T):
    """The reference flags of MDC and YOCO, then ours; ``kind`` decides which are shown (module docstring)."""
    a = _Adder(parser, kind)
    never = frozenset()
    # data
    a("data", ALL, "-d", "--dataset", default="cifar10", type=str, help=f"one of {', '.join(DATASETS)}")
    a("data", ALL, "--data_dir", default="datasets", type=str,
      help="torchvision root of CIFAR/SVHN/MNIST/Fashion-MNIST (SVHN under <data_dir>/svhn)")
    a("data", ALL, "--imagenet_dir", default="datasets/imagenet", type=str, help="ImageNet folder with train/ and val/")
    a("data", ALL, "--download", action="store_true", help="let torchvision download a missing dataset")
    a("data", ALL, "--nclass", default=10, type=int, valid=">= 1", help="ImageNet: number of classes of the subset")
    a("data", ALL, "--dseed", default=0, type=int, valid=">= 0",
      help="ImageNet: class-subset seed (0 = the class100.txt order)")
    a("data", ALL, "--size", default=224, type=int, valid=">= 8",
      help="ImageNet: image size (CIFAR/SVHN 32, MNIST/Fashion 28)")
    a("data", frozenset((M, T)), "--phase", default=-1, type=int, valid="-1 or >= 0",
      help={M: "which class partition this process condenses (0 .. nclass/nclass_sub - 1)",
            T: "ImageNet -s random: class partition (as the reference)"})
    a("data", frozenset((M, T)), "--nclass_sub", default=-1, type=int, valid={M: ">= 1", T: "-1 or >= 1"},
      help={M: "classes per partition; must divide --nclass",
            T: "-s idc_cat: classes per partition of the runs to concatenate"})
    a("data", COND, "-l", "--load_memory", default=True, type=str2bool,
      help="ImageNet: decode the training images into memory once (False: stream from disk)")
    # model
    a("model", ALL, "-n", "--net_type", default="convnet", type=str,
      help="convnet, resnet_ap, resnet (ImageNet: resnet_ap), or a registry name")
    a("model", ALL, "--norm_type", default="instance", type=str,
      choices=["batch", "instance", "sn", "none", "layer", "group"], help="normalisation layers")
    a("model", ALL, "--depth", default=10, type=int, valid=">= 1", help="network depth (ConvNet: > 4 means 3)")
    a("model", ALL, "--width", default=1.0, type=float, valid="> 0", help="width multiplier")
    a("model", ALL, "--eval_net", default="", type=str,
      help="evaluation architectures, comma-separated registry names (default: the --net_type network)")
    # evaluation protocol
    a("protocol", ALL, "--epochs", default=1000, type=int, valid=">= 1",
      help="training epochs (set from the dataset and IPC unless given; ImageNet by decoded count)")
    a("protocol", ALL, "--batch_size", default=64, type=int, valid=">= 1", help="batch size")
    a("protocol", ALL, "--lr", default=0.01, type=float, valid="> 0",
      help="SGD learning rate of every trained network (also the condensation network)")
    a("protocol", ALL, "--momentum", default=0.9, type=float, valid="[0, 1]",
      help="SGD momentum of every trained network")
    a("protocol", ALL, "--weight-decay", "--wd", dest="weight_decay", default=5e-4, type=float, valid=">= 0",
      help="SGD weight decay")
    a("protocol", ALL, "--mixup", default="cut", type=str, choices=["vanilla", "cut"],
      help="cut: CutMix with probability --mix_p")
    a("protocol", ALL, "--beta", default=1.0, type=float, valid="> 0", help="CutMix Beta(β, β) parameter")
    a("protocol", ALL, "--mix_p", default=1.0, type=float, valid="[0, 1]",
      help="CutMix probability (0.5 for CIFAR/SVHN/MNIST)")
    a("protocol", ALL, "--dsa", default=False, type=str2bool,
      help="differentiable Siamese augmentation per sample (True for CIFAR/SVHN/MNIST)")
    a("protocol", ALL, "--dsa_strategy", default="color_crop_cutout_flip_scale_rotate", type=str,
      help="DSA operations joined by _ (cutout is dropped with CutMix)")
    a("protocol", ALL, "--rrc", default=True, type=str2bool, help="ImageNet: random resized crop")
    a("protocol", ALL, "--repeat", default=1, type=int, valid=">= 1",
      help="networks trained per evaluation (mean ± std)")
    a("protocol", ALL, "-j", "--workers", default=0, type=int, valid=">= 0",
      help="ImageNet input: processes for the per-sample augmentation of evaluation training (0 = main "
           "thread; other random draws than 0), validation loader workers, decoding threads of streaming "
           "condensation (same images with any number)")
    a("protocol", frozenset((T,)), "--same_compute", default=False, type=str2bool,
      help="divide the epochs by factor² (same compute as the undecoded set)")
    a("protocol", frozenset((T,)), "--val_per_class", default=0, type=int, valid=">= 0",
      help="hold out K real training images per class (never trained on), validate on them at the test epochs and "
           "also report best_on_val, the test accuracy at the best held-out epoch (0: off, the papers' protocol; "
           "docs/evaluating.md)")
    a("protocol", frozenset((T,)), "--val_seed", default=0, type=int, valid=">= 0",
      help="seed of the --val_per_class choice (the same held-out images on every run and resume)")
    # condensed set (test.py)
    a("set", ALL, "-i", "--ipc", default=-1, type=int, valid={C: ">= 1", M: ">= 1", T: "-1 or >= 1"},
      help={C: "images per class to condense", M: "images per class to condense",
            T: "stored images per class of the set (-1: read from the set)"})
    a("set", ALL, "-f", "--factor", default=1, type=int, valid=">= 1",
      help="multi-formation factor f: every stored image is f×f tiles (1 = none)")
    a("set", ALL, "--decode_type", default="single", type=str, choices=["single", "multi", "bound"],
      help="how mosaics are decoded (test.py honours single and multi)")
    a("set", frozenset((T,)), "--test_data_dir", default="", type=str,
      help="condensed set: a run folder (its data_{niter}.pt, data.pt or latest data_*.pt) or a .pt file")
    a("set", frozenset((T,)), "--test_type", default="other", type=str,
      help="other (the whole set), cx_cy (the IPC-y prefix), baseline_b (y separate IPC-1 runs)")
    a("set", frozenset((T,)), "--ipcy", default=-1, type=int, valid="-1 or >= 1",
      help="cx_cy / baseline_b: y, the IPC evaluated")
    a("set", frozenset((T,)), "--prefix_epochs", default="full", type=str, choices=["full", "subset"],
      help="cx_cy / baseline_b training epochs: full = those of the whole --ipc N (the reference's; also "
           "--reproduce's), subset = those of the evaluated IPC-y; only ImageNet's epochs depend on the IPC "
           "(other datasets: 1000 either way); an explicit --epochs wins")
    a("set", ALL, "-s", "--slct_type", default="idc", type=str,
      help={C: "idc, or dream (k-means initialisation and DREAM's real batches)",
            M: "idc, or dream (k-means initialisation and DREAM's real batches)",
            T: "source format: idc, dream, idc_cat (class partitions), random (real images), dc, dsa, kip, mtt"})
    a("set", ALL, "--niter", default=500, type=int, valid={C: ">= 1", M: ">= 1", T: ">= 0"},
      help={C: "outer iterations ×100 / inner_loop", M: "outer iterations ×100 / inner_loop",
            T: "a run folder's data_{niter}.pt is evaluated"})
    # condensation
    a("condense", COND, "--init", default="random", type=str, choices=["random", "noise", "mix"],
      help="initialisation (mix whenever f > 1)")
    a("condense", COND, "-a", "--aug_type", default="color_crop_cutout", type=str,
      help="matching augmentation, operations joined by _")
    a("condense", COND, "--match", default="grad", type=str, choices=["feat", "grad", "logit"],
      help="what is matched (MDC needs grad)")
    a("condense", COND, "--metric", default="l1", type=str, choices=["mse", "l1", "l1_mean", "l2", "cos"],
      help="matching distance (MDC uses mse)")
    a("condense", COND, "--bias", default=False, type=str2bool, help="also match the bias gradients")
    a("condense", COND, "--fc", default=False, type=str2bool, help="also match the classifier gradients")
    a("condense", COND, "--f_idx", default="4", type=str, help="feature layer(s) for --match feat (from,to)")
    a("condense", COND, "--inner_loop", default=100, type=int, valid=">= 1", help="inner steps per outer iteration")
    a("condense", COND, "--early", default=0, type=int, valid=">= 0",
      help="epochs of real-data training of each fresh network")
    a("condense", COND, "--fix_iter", default=-1, type=int, valid="any",
      help="a fresh network every N outer iterations (≤1: every)")
    a("condense", COND, "--net_epoch", default=1, type=int, valid=">= 1", help="network-update passes per inner step")
    a("condense", COND, "--n_data", default=500, type=int, valid="any",
      help="real samples per network update (≤0: no update)")
    a("condense", COND, "--pt_from", default=-1, type=int, valid="-1",
      help="pretrained networks: not supported, keep -1")
    a("condense", COND, "--batch_real", default=64, type=int, valid=">= 1", help="real images per class and step")
    a("condense", COND, "--batch_syn_max", default=128, type=int, valid=">= 1",
      help="decoded synthetic images per class and step, at most")
    a("condense", COND, "--lr_img", default=5e-3, type=float, valid="> 0",
      help="image learning rate (× ipc/10 × (size/base)²)")
    a("condense", COND, "--mom_img", default=0.5, type=float, valid="[0, 1]", help="image optimiser momentum")
    a("condense", COND, "--mixup_net", default="cut", type=str, choices=["vanilla", "cut"],
      help="CutMix in the network updates")
    a("condense", COND, "--start_idx", default=0, type=int, valid=">= 0",
      help="initialise from real images starting here (Baseline B)")
    a("condense", COND, "--interval", default=10, type=int, valid=">= 1",
      help="-s dream: k-means re-clustering interval")
    a("condense", COND, "--dream_random_init", default="first", choices=["first", "picks"],
      help="-s dream, --init random, f = 1: first = the first real images (reference), picks = the k-means picks")
    # MDC
    a("mdc", COND, "--adaptive_reg", default=False, type=str2bool,
      help="MDC: the adaptive subset loss (the MLS subset term and freezing)")
    a("mdc", COND, "--adaptive_period", default=100, type=int, valid=">= 1",
      help="MLS selection interval P (iterations)")
    a("mdc", COND, "--adaptive_class_wise", action="store_true", help="one MLS per class instead of one for all")
    # the MLS rules and measures: choices, help and hyper-parameters from their registry (condensation/mls)
    a("mdc", COND, "--mls_select", default=mls.RULES.default, type=str, choices=mls.RULES.names(),
      help=mls.RULES.help())
    a("mdc", COND, "--mls_freeze", default=True, type=str2bool,
      help="freeze finished smaller subsets while a larger MLS trains (MDC; False: MDC Table 3 ablation)")
    a("mdc", COND, "--mls_metric", default=mls.MEASURES.default, type=str, choices=mls.MEASURES.names(),
      help=mls.MEASURES.help())
    for flag, name, o in mls.hparam_options():
        a("mdc", COND, f"--{o.name}", default=o.default, type=str2bool if o.type is bool else o.type,
          choices=o.choices, valid=o.valid, help=f"{flag} {name}: {o.help}")
    # parallel condensation (ours; the MDC reference's condense_reg_mp.py, he-y/Multisize-Dataset-Condensation, runs
    # one partition per process by hand: docs/algorithms.md#class-partitioned-condensation)
    a("parallel", COND, "--exact", default=False, type=str2bool,
      help={C: "one random stream per class (real batches, augmentations, noise init), so that a torchrun run of "
               "condense_reg_mp.py --exact True gives these images; changes the numbers: off reproduces the paper",
            M: "under torchrun: the sharded run equals condense_reg.py --exact True (one network on a shared "
               "stream, per-class streams, global MLS, the cross-class momentum in closed form)"})
    a("parallel", frozenset((M,)), "--global_mls", default=False, type=str2bool,
      help="under torchrun: gather the MLS window distances of all partitions so every partition makes one "
           "global decision (default: each partition decides alone, as the reference)")
    a("parallel", frozenset((M,)), "--coast", default="replay", type=str, choices=["replay", "closed"],
      help="--exact: the other ranks' image steps on this shard's momentum: replayed step by step (exact), or in "
           "closed form (two operations, differs by float rounding that the matching amplifies)")
    a("parallel", frozenset((M,)), "--merge", action="store_true",
      help="only merge the partitions of this command's runs into <base>_{k}_merged/data.pt + manifest.json")
    a("parallel", frozenset((M, T)), "--allow_mismatch", default=False, type=str2bool,
      help={M: "--merge: accept partitions of different iterations or settings (recorded in the manifest)",
            T: "-s idc_cat: accept partitions of different iterations or settings"})
    # speed (ours, issue 12)
    a("speed", ALL, "--precision", default="fp32", type=str, choices=["fp32", "tf32", "bf16"],
      help="arithmetic of the network passes: fp32 (faithful: PyTorch's defaults, as the reference), tf32 (CUDA: "
           "TF32 matrix products and convolutions), bf16 (autocast to bfloat16; changes the numbers)")
    a("speed", COND, "--class_batch", default=False, type=str2bool,
      help="compute all classes' matching losses of an inner step in one batched pass at the positions the "
           "sequential loop uses (equal up to float rounding; needs --match grad and a model without BatchNorm "
           "batch statistics)")
    # YOCO
    a("yoco", frozenset((T,)), "--slct_ipc", default=0, type=int, valid=">= 0",
      help="IPC_T: prune the set to this IPC (0: no pruning)")
    a("yoco", frozenset((T,)), "--condense_key", default="idc", type=str, choices=CONDENSE_KEYS,
      help="which condensed set is pruned (its folder and format)")
    a("yoco", frozenset((T,)), "--pruning_key", default=DEFAULT_PRUNING_KEY, type=str,
      help=pruning_key_help())  # from the YOCO registries (yoco/registry.py)
    a("yoco", frozenset((T,)), "--score_file", default="", type=str,
      help="score file of generate_importance_score.py (default: from --reproduce_exp)")
    a("yoco", frozenset((T,)), "--topk", default=10, type=int, valid=">= 1", help="LBPE top-K epochs (the yoco key)")
    a("yoco", frozenset((T,)), "--stop_epoch", default=100, type=int, valid=">= 1",
      help="epoch the scores were computed at")
    a("yoco", frozenset((T,)), "--reproduce_exp", default="reproduce_3", type=str,
      help="which repetition: raid/{reproduce_exp}/...")
    a("yoco", frozenset((T,)), "--custom_data_dir", default="", type=str,
      help="condensed set to prune (default: from --condense_key)")
    a("yoco", frozenset((T,)), "--no_resnet", action="store_true",
      help="evaluate pruned CIFAR sets on the default network only (not also ResNet-10-BN, DenseNet)")
    a("yoco", frozenset((T,)), "--balance", action="store_true", help="balanced construction (set by the key)")
    a("yoco", frozenset((T,)), "--use_hard", action="store_true", help="keep the hardest samples (set by the key)")
    a("yoco", frozenset((T,)), "--random_selection", action="store_true", help="random subset (set by the key)")
    a("yoco", frozenset((T,)), "--prune_score_ratio", default=None, type=float, valid="[0, 1)",
      help="CCS hard cut-off ratio (default: the paper's table)")
    a("yoco", frozenset((T,)), "--ccs_type", default="ccs_1", type=str, help="CCS variant")
    a("yoco", frozenset((T,)), "--strata_fixed_select", action="store_true", help="CCS: fixed selection within strata")
    a("yoco", frozenset((T,)), "--strata_random_select", action="store_true",
      help="CCS: random selection within strata")
    # run and output
    a("output", ALL, "--seed", default=123, type=int, valid=">= 0", help="global seed (repeat r of test.py: seed + r)")
    a("output", ALL, "--deterministic", default=False, type=str2bool,
      help="deterministic algorithms (bit-exact reruns and resumes on CPU)")
    a("output", ALL, "--device", default="auto", type=str, help="auto, cpu or cuda")
    a("output", ALL, "--reproduce", action="store_true", help="apply the paper's presets (configs/reproduce.yaml)")
    a("output", ALL, "--reproduce_condense", action="store_true", help="YOCO's name for --reproduce")
    parser.add_argument("--presets", default=PRESETS, type=str, help=argparse.SUPPRESS)
    a("output", COND, "--tag", default="", type=str, help="prefix of the run folder's suffix")
    a("output", COND, "--save_dir", default="", type=str,
      help="run folder (default raid/results/{dataset}/{model}{tag}, the reference's name)")
    a("output", COND, "--resume", action="store_true", help="continue the run found in the run folder")
    a("output", COND, "--load_checkpoint", action="store_true", help="the reference's name of --resume")
    a("output", COND, "--eval_during", default=True, type=str2bool, help="in-run evaluations at save points")
    a("output", COND, "--eval_epochs", default=-1, type=int, valid="-1 or >= 1",
      help="epochs of in-run evaluations (-1: the protocol's)")
    a("output", COND, "--test", action="store_true", help="debug: save to raid/results/test, no evaluations")
    a("output", frozenset((T,)), "--results_file", default="", type=str,
      help="JSON list the evaluation is appended to (default: test_results.json next to the set)")
    a("output", frozenset((T,)), "--run_tag", default="", type=str,
      help="label of this evaluation (a table row or table name), kept in its record; the default results "
           "file becomes test_results_{run_tag}.json, so tables that evaluate one set never mix")
    a("output", frozenset((T,)), "--save_subset", default="", type=str,
      help="also write the evaluated (decoded, pruned) training set as [data, targets]")
    add_tracking_args(lambda *f, **kw: a("tracking", ALL, *f, **kw), "MDC", "default_run",
                      "Aim run name (default {dataset}_ipc{ipc}, plus the reference's folder suffixes)")
    # reference flags without an effect here
    for flags, kw in ((("--pretrained",), {"action": "store_true"}),
                      (("-p", "--print-freq"), {"dest": "print_freq", "default": 10, "type": int}),
                      (("--verbose",), {"action": "store_true"}), (("--save_ckpt",), {"default": False, "type": str2bool}),
                      (("--time",), {"action": "store_true"}), (("--after_softmax",), {"default": False, "type": str2bool}),
                      (("--per_logit",), {"default": False, "type": str2bool}), (("--pt_num",), {"default": 1, "type": int}),
                      (("--name",), {"default": "", "type": str}), (("--aug_seed",), {"default": 0, "type": int}),
                      (("--fix_seed",), {"action": "store_true"}), (("--no_aug",), {"action": "store_true"}),
                      (("--resume_epoch",), {"default": 0, "type": int}),
                      (("--stratified_sampling",), {"action": "store_true"}),
                      (("--prune_score",), {"default": None, "type": float}), (("--epoch",), {"default": 100, "type": int}),
                      (("--load_mtt",), {"action": "store_true"}), (("--load_dsa",), {"action": "store_true"}),
                      (("--load_kip",), {"action": "store_true"})):
        a("output", never, *flags, help="", valid="any", **kw)  # no effect: any value
    return compat_group(parser)


EXAMPLES = {
    C: """examples:
  python condense_reg.py --reproduce -d cifar10 -f 2 --ipc 10 --adaptive_reg True    # MDC, IPC-1..10 in one run
  python condense_reg.py --reproduce -d cifar10 -f 2 --ipc 10                        # Baseline C
  python condense_reg.py --reproduce -d fashion -f 2 --ipc 4 --adaptive_reg True --niter 100 --resume
""",
    M: """examples:
  python condense_reg_mp.py --reproduce -d cifar100 -f 2 --ipc 10 --adaptive_reg True --nclass_sub 20 --phase 0
  for p in 0 1 2 3 4; do python condense_reg_mp.py ... --nclass_sub 20 --phase $p & done; wait
  torchrun --standalone --nproc_per_node 5 condense_reg_mp.py ... --nclass_sub 20     # all phases + merge
  python condense_reg_mp.py ... --nclass_sub 20 --merge                                # merge finished parts
""",
    T: """examples:
  python test.py -d cifar10 -f 2 --ipc 10 --test_data_dir <run folder> --repeat 3
  python test.py -d cifar10 -f 2 --ipc 10 --test_type cx_cy --ipcy 5 --test_data_dir <run folder>
  python test.py -d cifar10 --ipc 10 --slct_ipc 1 --pruning_key yoco --reproduce_exp reproduce_1   # YOCO
""",
}


def add_tracking_args(add, exp_default, run_default, run_help):
    """The reference's Aim flags and our ``--tracker`` (``add``: an ``add_argument`` of the script's group)."""
    add("--tracker", default="none", choices=TRACKERS,
        help="experiment tracker of the run: aim (the reference's), tensorboard (event files in the run folder) or "
             "none (docs/tracking.md)")
    add("--use_aim", default=False, type=str2bool,
        help="the reference's switch: True = --tracker aim (its default was True; ours is off)")
    add("--aim_repo", default=".aim", type=str, help="Aim repository (open it with: aim up --repo <it>)")
    add("--exp_name", default=exp_default, type=str, help="Aim experiment of the run")
    add("--run_name", default=run_default, type=str, help=run_help)


def described_parser(description, examples):
    """An empty parser of ours: short usage, defaults shown, example commands after the options."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter, usage="%(prog)s [options]",
                                   epilog=examples)


def script_parser(description, kind, examples=None):
    """The parser of a script of ``kind``: described options, grouped, with example commands."""
    return add_reference_args(described_parser(description, examples if examples is not None else EXAMPLES[kind]),
                              kind)


def condense_parser(description, kind=C, examples=None):
    """The command line of condense_reg.py, condense.py (``kind`` condense) and condense_reg_mp.py (mp)."""
    p = script_parser(description, kind, examples)
    output = next(g for g in p._action_groups if g.title == GROUPS["output"])
    ranged(output.add_argument)("--stop_after", default=-1, type=int, valid="-1 or >= 1",
                        help="debug: stop after this many outer iterations (a save point; continue with --resume)")
    ranged(output.add_argument)("--lock_wait", default=0, type=int, valid="-1 or >= 0",
                                help="seconds to wait for a run folder that another process is using (0: stop at once "
                                     "with an error naming it; -1: as long as it takes; docs/condensing.md)")
    output.add_argument("--folder_lock", default=True, type=str2bool,
                        help="lock the run folder against a second process; False only on a file system without "
                             "locks, where you keep to one process per folder yourself")
    return p
