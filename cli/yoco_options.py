"""The flags shared by YOCO's two scripts (``get_training_dynamics.py``, ``generate_importance_score.py``):
which condensed set, where its dynamics and scores live (reference he-y/you-only-condense-once/argument.py;
docs/yoco.md; docs/algorithms.md#the-dynamics-run, #el2n-and-lbpe). The reference
spells them with dashes (``--custom-data-dir``); the underscore forms are accepted too.
"""
import argparse
import re

from cli.arguments import DATASETS
from cli.options import CONDENSE_KEYS
from utils.ranges import ranged

NETWORKS = ("convnet", "resnet10_ap")
DSA_STRATEGY = "color_crop_flip_scale_rotate"  # the dynamics run's augmentation (YOCO reference
# get_training_dynamics.py; docs/algorithms.md#the-dynamics-run)


def reproduce_seed(reproduce_exp):
    """The dynamics seed of a repetition: k for ``reproduce_k``, 0 for any other name. The reference is
    unseeded (and seeds nothing per repetition); the authors average three independent dynamics runs,
    so each of ours gets its own seed and a re-run of one repetition is reproducible."""
    m = re.fullmatch(r".*?(\d+)", reproduce_exp)
    return int(m.group(1)) if m else 0


def add_condensed_set_args(parser):
    """Dataset, condense key, IPC / factor, network, folders and device, as both reference scripts declare them."""
    a = ranged(parser.add_argument_group("condensed set").add_argument)
    hide = argparse.SUPPRESS
    a("-d", "--dataset", choices=DATASETS, default="cifar10", help="dataset of the condensed set")
    a("--condense_key", choices=CONDENSE_KEYS, default="idc", help="which condensation method made the set")
    a("--ipc", type=int, valid=">= 1", default=None,
      help="IPC of the condensed set (default: from the folder name / data)")
    a("--factor", type=int, valid=">= 1", default=None,
      help="multi-formation factor (default 2 CIFAR, 3 ImageNet, 1 mtt/dsa/kip)")
    a("--network", choices=NETWORKS, default=None,
      help="network trained on the set (default: convnet = ConvNet-3; resnet10_ap for ImageNet)")
    a("--custom-data-dir", "--custom_data_dir", dest="custom_data_dir", default=None,
      help="condensed set (folder or .pt); default raid/condensed_img/{condense_key}/{dataset}/...")
    a = parser.add_argument_group("folders and device").add_argument
    a("--base-dir", dest="base_dir", default=None,
      help="folder of the dynamics and scores (default raid/{reproduce_exp}/dynamics_and_scores/{condense_key}/"
           "{dataset})")
    a("--task-name", dest="task_name", default=None, help="sub-folder of --base-dir (default ipc{IPC})")
    a("--reproduce_exp", default="reproduce_3", help="which repetition: raid/{reproduce_exp}/...")
    a("--device", default="auto", help="auto, cpu or cuda")
    a("--gpuid", default="0", help=hide)  # unused by the reference; see --device
    for k in ("mtt", "dsa", "kip"):
        a(f"--load_{k}", action="store_true", help=hide)  # set from --condense_key in the reference
    a("--random_selection", action="store_true", help=hide)  # refused: scores need the full set
    return parser
