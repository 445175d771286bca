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

Protocols (docs/evaluating.md#protocol-card-and-report): a cell that pools several records (YOCO's reproduce runs)
whose protocol cards differ in a compared field (``compared_fields``), or where some records have no card, is
refused unless mixing is allowed (then it is marked); the table's shared protocol is, per field, the value most of
its cells have (``shared_protocol``), and ``differences`` names, per cell, where it departs from it.
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
    std: float = None    # a summary without per-repeat values (metrics.jsonl, a record listing no repeats): its std
    n: int = None        # with ``std``: the number of repeats it summarises (None: unknown)
    first_net: bool = True  # the record's first evaluation network (ConvNet for the YOCO tables)
    protocol: dict = None  # evaluation.records.net_protocol: the record's protocol card for this network (None: unknown)


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
    """The aggregated table: ordered row and column keys, {(row, col): (mean, std, n)} (n: the number of values the
    std is over, None when unknown) and {(row, col): the cells aggregated into it}."""
    table: Table
    rows: list
    cols: list
    values: dict
    members: dict = field(default_factory=dict)
    compared: tuple = ()  # the protocol fields compared (``compared_fields``)

    def avg(self, row):
        """Mean of the row's cell means; None when a cell of the row is missing."""
        cells = [self.values.get((row, c)) for c in self.cols]
        return None if not cells or any(v is None for v in cells) else float(np.mean([v[0] for v in cells]))


def _newest(cells, identity):
    out = {}
    for c in sorted(cells, key=lambda c: c.order):
        out[identity(c)] = c
    return list(out.values())


def pivot(table, cells, allow_mixed=False, compared=None):
    """Aggregate ``cells`` into ``table``'s rows and columns (module docstring); a cell pooling records that differ in
    a ``compared`` field (default: ``compared_fields("best")``) is a ``UserError`` unless ``allow_mixed``."""
    compared = compared or compared_fields("best")
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
        mixed = pooled_differences(group, compared)
        if mixed and not allow_mixed:
            raise UserError(f"the cell {' '.join(map(str, rk[0]))} / {table.col_name(rk[1])} would pool {len(group)} "
                            f"records of different protocols ({describe(mixed)}); evaluate them alike, or pass "
                            "--allow_mixed_protocols to pool them anyway (the cell is marked)")
        if table.yoco:  # each reproduce run: the mean of its repeats; the cell: mean ± std over runs
            per_exp = [mean_std(c.runs)[0] for c in group]
            values[rk] = (*mean_std(per_exp), len(per_exp))
        elif len(group) == 1 and group[0].std is not None:
            values[rk] = (mean_std(group[0].runs[:1])[0], mean_std([group[0].std])[0], group[0].n)
        else:
            runs = [x for c in group for x in c.runs]
            values[rk] = (*mean_std(runs), len(runs))
    return Pivot(table, rows, cols, values, groups, compared)


# ---------------------------------------------------------------------------------------------------
# protocols (docs/evaluating.md#protocol-card-and-report)
# the fields of a protocol card (evaluation/records.py, CARD_FIELDS and NET_FIELDS) that say how a network was
# trained: a cell pooling records that differ in one is refused, a cell differing from the table's shared value is
# marked; the validation split's too when the cells show the accuracy it picks (the split is drawn on its own and
# changes no test accuracy: evaluation/protocol.py, train_protocol). The others (repeats, seeds, which accuracies a
# record holds, device, device name, torch version, wall time) are shown in the protocol line, never refused or marked.
NET_KEYS = ("depth", "width", "norm_type")  # per network: shared among the cells of the same network
TRAINING = ("net",) + NET_KEYS + ("epochs", "lr", "lr_gamma", "lr_milestones", "momentum", "weight_decay", "batch_size",
                                  "dsa", "dsa_strategy", "mixup", "mix_p", "beta", "precision")
VALIDATION = ("val_per_class", "val_seed")


def compared_fields(accuracy):
    """The card fields compared between the cells of a table showing ``accuracy`` (``best``, ``val``, ``last``)."""
    return TRAINING + (VALIDATION if accuracy == "val" else ())
UNKNOWN = "unknown"  # the protocol of a record without a card
MIXED = "mixed"      # a field on which the records of a pooled cell differ


def show(v):
    """A card value as the report prints it."""
    if isinstance(v, list):
        return "[" + ", ".join(map(show, v)) + "]"
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "none"}[v]
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe(diffs):
    """``{field: [values]}`` as ``field v1 vs v2, ...``."""
    return ", ".join(f"{k} {' vs '.join(map(show, vs))}" for k, vs in diffs.items())


def pooled_differences(group, compared):
    """{field: [its distinct values]} over the protocols of the cells pooled into one (the ``compared`` fields; a mix
    of cells with and without a card: ``protocol``: unknown vs card)."""
    known = [c.protocol for c in group if c.protocol is not None]
    if known and len(known) < len(group):
        return {"protocol": [UNKNOWN, "card"]}
    out = {}
    for f in compared:
        vs = [p.get(f) for p in known]
        distinct = [v for i, v in enumerate(vs) if v not in vs[:i]]
        if len(distinct) > 1:
            out[f] = distinct
    return out


def cell_protocol(group, compared):
    """The compared protocol of the cells pooled into one: each ``compared`` field's value, ``MIXED`` where they
    differ; None when no cell has a card."""
    known = [c.protocol for c in group if c.protocol is not None]
    if not known:
        return None
    mixed = pooled_differences(group, compared)
    return {f: MIXED if f in mixed else known[0].get(f) for f in compared}


def _slot(p, f):
    return (p["net"], f) if f in NET_KEYS else f


def shared_protocol(p):
    """The table's shared protocol: {field (per network for ``NET_KEYS``: (net, field)): the value most of its cells
    with a card have}, ties to the first one read; {} when no cell has a card."""
    counts = {}
    for rk in p.values:
        cp = cell_protocol(p.members[rk], p.compared)
        for f in p.compared if cp is not None else ():
            if cp[f] != MIXED and cp["net"] != MIXED:
                counts.setdefault(_slot(cp, f), []).append(cp[f])
    return {slot: max(vs, key=lambda v: (vs.count(v), -vs.index(v))) for slot, vs in counts.items()}


def differences(p, shared):
    """{(row, col): how the cell departs from ``shared`` (the fields and values it differs in, the protocols it
    pools, or protocol unknown)} for the cells that do; {} when no cell has a card."""
    out = {}
    for rk in (k for r in p.rows for c in p.cols for k in [(r, c)] if k in p.values):
        cp, notes = cell_protocol(p.members[rk], p.compared), []
        if cp is None:
            notes.append("protocol unknown (records without a protocol card)")
        else:
            fields = ", ".join(f"{f} {show(cp[f])}" for f in p.compared if f != "net" and cp[f] != MIXED
                               and cp["net"] != MIXED and cp[f] != shared.get(_slot(cp, f)))
            notes += [fields] if fields else []
        mixed = pooled_differences(p.members[rk], p.compared)
        if mixed:
            notes.append(f"pools records of different protocols: {describe(mixed)}")
        if notes and shared:
            out[rk] = "; ".join(notes)
    return out


def distinct(p, value):
    """The distinct ``value(protocol)`` over the records behind the table's cells (each network of a record once),
    in table order; records without a card left out."""
    vals = list({(c.order, c.net): value(c.protocol) for rk in p.values for c in p.members[rk]
                 if c.protocol is not None}.values())
    return [v for i, v in enumerate(vals) if v not in vals[:i]]


def wall_seconds(p):
    """The wall time of the records behind the table's cells that have a card (each record once)."""
    return sum({c.order: c.protocol["wall_seconds"] or 0.0 for rk in p.values for c in p.members[rk]
                if c.protocol is not None}.values())
