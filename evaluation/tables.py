"""The paper tables: how evaluation records become rows and columns (MDC Tables 1–6, 8, 10, 11 and
YOCO Tables 1–5), and how repeats and reproduce runs are aggregated. No file I/O here
(``evaluation/report.py`` reads the records and writes Markdown, CSV and plots).

A *cell* is one evaluation network of one ``test.py`` record (or one in-run evaluation of a
``metrics.jsonl``). Every table is a pivot of cells: ``row(cell)`` and ``col(cell)`` give the keys, and
all cells with the same keys are aggregated:

* MDC tables: mean ± std over the repeats of the evaluation (``--repeat``), as ``test.py`` reports it;
  the average column is the mean of the row's IPC means and is missing when a cell of the row is.
* YOCO tables: each reproduce run (``--reproduce_exp``, the authors' ``raid/reproduce_{1,2,3}``) is the
  mean over its repeats; the cell is the mean over reproduce runs ± their (population) std, with the
  number of runs shown when it is not the same for every cell.

An evaluation run twice (same row, column, reproduce run and network) counts once: the newest record wins.
Missing cells are shown as missing (``–``), never filled.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from utils.errors import UserError
from yoco.registry import key_names, pruning_bases
from yoco.selection import DEFAULT_PRUNING_KEY  # importing yoco.selection registers every pruning base

MISSING = "–"


@dataclass
class Cell:
    """One evaluated network: what was evaluated (the row/column keys of any table) and its accuracies."""
    label: str           # the row name given on the command line (LABEL=PATH), else --run_tag, else the file
    dataset: str
    net: str
    ipc: int             # the IPC that was evaluated (IPC-y of a prefix, IPC_T of a pruned set)
    ipc_f: int = 0       # the condensed set's IPC (YOCO's IPC_F; MDC's N)
    key: str = ""        # YOCO --pruning_key
    condense_key: str = "idc"
    exp: str = ""        # YOCO --reproduce_exp
    runs: list = field(default_factory=list)  # best accuracy of every repeat
    order: float = 0.0   # newer records have larger values
    step: int = 0        # metrics.jsonl: the condensation iteration
    std: float = None    # metrics.jsonl: the std its in-run evaluation reported (no per-repeat list there)
    first_net: bool = True  # the record's first evaluation network (ConvNet for the YOCO tables)


def mean_std(values):
    """Mean and (population) std of accuracies; a non-finite or missing value is a ``UserError``, never a printed
    ``nan`` (the readers refuse them per field, evaluation/records.py: this is the last line of defence)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or not np.isfinite(a).all():
        raise UserError(f"cannot aggregate the accuracies {list(values)[:5]}: every cell needs finite accuracies; "
                        "pass records checked by evaluation.records (test.py's results files)")
    return float(a.mean()), float(a.std())


# ---------------------------------------------------------------------------------------------------
# names as the papers print them
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet": "ImageNet-10",
                 "fashion": "Fashion-MNIST", "mnist": "MNIST"}
NET_NAMES = {"convnet": "ConvNet", "resnet10_bn": "ResNet-10-BN", "densenet": "DenseNet", "resnet10_ap": "ResNetAP-10"}
# YOCO: from the pruning bases' metadata (yoco/registry.py): each base's label and named variants, the bases in
# the order of YOCO Table 1, and Table 4's hard vs easy rows (each base with an easy variant, hard then easy, and
# the YOCO key, easy by default)
KEY_NAMES = key_names()
YOCO_KEYS = tuple(b.name for b in pruning_bases())
EASY_KEYS = tuple(k for b in pruning_bases() if "_easy" in b.variants for k in (b.name, b.name + "_easy")) + (
    DEFAULT_PRUNING_KEY,)
CONDENSERS = ("idc", "dream", "mtt", "kip", "dsa")


def dataset_name(d):
    return DATASET_NAMES.get(d, d)


def net_name(n):
    return NET_NAMES.get(n, n)


def method_name(cell):
    name = KEY_NAMES.get(cell.key, cell.key)
    return name if cell.condense_key == "idc" else f"{name} ({cell.condense_key.upper()})"


def base_key(key):
    return key.replace("_imbalance", "").replace("_balance", "")


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """A paper table: a title, the row and column keys of a cell, their header names and orders."""
    title: str
    row_names: tuple                       # header of each part of the row key
    row: Callable                          # cell -> row key (tuple, one entry per row_names)
    col: Callable                          # cell -> column key
    col_name: Callable = str               # column key -> header
    avg: bool = False                      # an average column (the papers' "Avg.")
    yoco: bool = False                     # aggregate over reproduce runs
    row_rank: Callable = lambda key: 0     # rows sort by (rank, first appearance)
    col_rank: Callable = lambda key: key   # columns sort by this
    source: str = "records"                # or "metrics" (metrics.jsonl of condensation runs)
    first_net_only: bool = False           # ConvNet-only tables: other networks of a record are left out
    plot: str = ""                         # "ipc" (accuracy vs IPC) or "step" (accuracy vs iteration)


def _order(names):
    return lambda key: names.index(key) if key in names else len(names)


def _period(label):
    """Table 6 rows "P=k" in the order of k, whichever periods were run (e.g. scaled to a CPU budget)."""
    try:
        return int(label.split("=", 1)[1]) if label.startswith("P=") else float("inf")
    except ValueError:
        return float("inf")


def _mdc(title, rows=(), plot="ipc", method_rank=None):
    """MDC layout (Tables 1–6, 8, 11): a row per dataset, network and method; IPC-1 … IPC-N and Avg.
    Methods sort in the order of ``rows`` (unknown ones after, by first appearance), or by ``method_rank``."""
    method_rank = method_rank or _order(list(rows))
    return Table(title, ("Dataset", "Network", "Method"),
                 row=lambda c: (dataset_name(c.dataset), net_name(c.net), c.label),
                 col=lambda c: c.ipc, col_name=lambda y: f"IPC-{y}", avg=True,
                 row_rank=lambda k: (_order(list(DATASET_NAMES.values()))(k[0]), _order(list(NET_NAMES.values()))(k[1]),
                                     method_rank(k[2])), plot=plot)


TABLES = {
    "mdc1": _mdc("MDC Table 1: Baselines A, B, C and MDC at every IPC-y (one condensation for MDC)",
                 rows=("A", "B", "C", "MDC")),
    "mdc2": _mdc("MDC Table 2: condensation methods, every IPC-y of their sets",
                 rows=("DC", "DSA", "MTT", "IDC", "DREAM", "MDC")),
    "mdc3": _mdc("MDC Table 3: components of the adaptive subset loss (Calculate, Compare, Freeze)",
                 rows=("C", "random", "distance", "change", "MDC")),
    "mdc4": _mdc("MDC Table 4: cross-architecture evaluation", rows=("A", "B", "C", "MDC")),
    "mdc5": _mdc("MDC Table 5: the measure the MLS is chosen from", rows=("feature", "gradient", "accuracy")),
    "mdc6": _mdc("MDC Table 6: the MLS selection interval P", method_rank=_period),
    "mdc8": _mdc("MDC Table 8: IDC vs DREAM initialisation, with and without MDC",
                 rows=("IDC", "IDC + MDC", "DREAM", "DREAM + MDC")),
    "mdc10": Table("MDC Table 10: in-run accuracy of every IPC-x during condensation (metrics.jsonl)",
                   ("Dataset", "Network", "Method", "Iteration"),
                   row=lambda c: (dataset_name(c.dataset), net_name(c.net), c.label, c.step),
                   col=lambda c: c.ipc, col_name=lambda y: f"IPC-{y}", avg=True,
                   row_rank=lambda k: k[3], source="metrics", plot="step"),
    "mdc11": _mdc("MDC Table 11: one MLS per class (--adaptive_class_wise) vs one for all", rows=("C", "MDC", "MDC class-wise")),
    "yoco1": Table("YOCO Table 1: pruning IDC sets from IPC_F to IPC_T (ConvNet)", ("Method",),
                   row=lambda c: (method_name(c),), col=lambda c: (dataset_name(c.dataset), c.ipc_f, c.ipc),
                   col_name=lambda k: f"{k[0]} {k[1]}→{k[2]}", yoco=True, first_net_only=True,
                   row_rank=lambda k: _order([KEY_NAMES[x] for x in YOCO_KEYS[:1]] + ["Random (DREAM)"]
                                             + [KEY_NAMES[x] for x in YOCO_KEYS[1:]])(k[0])),
    "yoco2": Table("YOCO Table 2: balanced construction across condensers (CIFAR-10, IPC 10→1)", ("Dataset", "Method"),
                   row=lambda c: (f"{dataset_name(c.dataset)} {c.ipc_f}→{c.ipc}", KEY_NAMES.get(c.key, c.key)),
                   col=lambda c: c.condense_key, col_name=str.upper, yoco=True, first_net_only=True,
                   row_rank=lambda k: _order([KEY_NAMES[x] for x in ("random", "random_balance", "yoco_imbalance",
                                                                      "yoco")])(k[1]), col_rank=_order(CONDENSERS)),
    "yoco3": Table("YOCO Table 3: cross-architecture (CIFAR-10, IPC 10→1)", ("Dataset", "Method"),
                   row=lambda c: (f"{dataset_name(c.dataset)} {c.ipc_f}→{c.ipc}", method_name(c)),
                   col=lambda c: c.net, col_name=net_name, avg=True, yoco=True,
                   row_rank=lambda k: _order([KEY_NAMES[x] for x in YOCO_KEYS])(k[1]),
                   col_rank=_order(["convnet", "resnet10_bn", "densenet"])),
    "yoco4": Table("YOCO Table 4: hard vs easy samples across condensers (CIFAR-10, IPC 10→1)", ("Dataset", "Method"),
                   row=lambda c: (f"{dataset_name(c.dataset)} {c.ipc_f}→{c.ipc}", KEY_NAMES.get(c.key, c.key)),
                   col=lambda c: c.condense_key, col_name=str.upper, yoco=True, first_net_only=True,
                   row_rank=lambda k: _order([KEY_NAMES[x] for x in EASY_KEYS])(k[1]), col_rank=_order(CONDENSERS)),
    "yoco5": Table("YOCO Table 5: balanced vs imbalanced selection (CIFAR-10, IPC 10→IPC_T)", ("Dataset", "Method"),
                   row=lambda c: (f"{dataset_name(c.dataset)} IPC_F {c.ipc_f}", KEY_NAMES.get(base_key(c.key), c.key)),
                   col=lambda c: (c.ipc, "balanced" if c.key.endswith("_balance") or c.key == "yoco" else "imbalanced"),
                   col_name=lambda k: f"→{k[0]} {k[1]}", yoco=True, first_net_only=True,
                   row_rank=lambda k: _order([KEY_NAMES[x] for x in YOCO_KEYS])(k[1]),
                   col_rank=lambda k: (k[0], k[1] == "balanced")),
}
TABLES["prefix"] = _mdc("Every IPC-x prefix of condensed sets")


# ---------------------------------------------------------------------------------------------------
@dataclass
class Pivot:
    """The aggregated table: ordered row and column keys, and {(row, col): (mean, std, n_runs)}."""
    table: Table
    rows: list
    cols: list
    values: dict

    def avg(self, row):
        """Mean of the row's cell means; None when a cell of the row is missing."""
        cells = [self.values.get((row, c)) for c in self.cols]
        return None if not cells or any(v is None for v in cells) else float(np.mean([v[0] for v in cells]))


def _newest(cells, identity):
    out = {}
    for c in sorted(cells, key=lambda c: c.order):
        out[identity(c)] = c
    return list(out.values())


def pivot(table, cells):
    """Aggregate ``cells`` into ``table``'s rows and columns (module docstring)."""
    if table.first_net_only:
        cells = [c for c in cells if c.first_net]
    cells = _newest(cells, lambda c: (table.row(c), table.col(c), c.exp, c.net, c.step))
    rows, cols, groups = [], [], {}
    for c in cells:
        r, k = table.row(c), table.col(c)
        rows += [r] if r not in rows else []
        cols += [k] if k not in cols else []
        groups.setdefault((r, k), []).append(c)
    rows = sorted(rows, key=lambda r: (table.row_rank(r), rows.index(r)))
    cols = sorted(cols, key=table.col_rank)
    values = {}
    for rk, group in groups.items():
        if table.yoco:  # each reproduce run: the mean of its repeats; the cell: mean ± std over runs
            per_exp = [mean_std(c.runs)[0] for c in group]
            values[rk] = (*mean_std(per_exp), len(per_exp))
        elif len(group) == 1 and group[0].std is not None:
            values[rk] = (mean_std(group[0].runs[:1])[0], mean_std([group[0].std])[0], 1)
        else:
            runs = [x for c in group for x in c.runs]
            values[rk] = (*mean_std(runs), len(runs))
    return Pivot(table, rows, cols, values)
