"""The MLS registries: every selection rule (``--mls_select``) and every measure (``--mls_metric``) of MDC's
adaptive subset loss is one registered class that owns everything about it (docs/contributing.md, "An MLS
selection rule"). Everything else is derived from the entries here: the ``choices`` and help of the two flags
and the flags of the entries' hyper-parameters (``cli/options.py``), the settings a resume must match
(``cli.options.NUMBER_KEYS``), the check that the switches need ``--adaptive_reg True``
(``condensation/runner.py``), the run folder's tag (``condensation/run_files.py``), and the ``mls`` record of
``metrics.jsonl``, written by the loop and read by ``tracking/client.py`` and ``evaluation/mls_trace.py``.

Modelled on DeepCore's one class per method and timm's ``@register_model``: the rules live in ``rules.py``, the
measures in ``measures.py``. This module imports nothing but ``utils.errors``, and the entry modules import torch
inside their functions only: the command line imports the registries, and ``-h`` never imports torch
(tests/test_help.py).

A rule, per class (one instance per ``Regularizer``): ``select(cur, it, prev) -> (mls, delta)`` from the
window-averaged measure d̄ of the prefixes (``cur``, index i <-> IPC-(i+1)), the iteration ``it`` = t + 1 and the
previous window's d̄ (``prev``, None at the first selection); ``delta`` is the Δ vector the run logs, or None.
Its own state goes through ``state_dict``/``load_state_dict`` (JSON values; the regulariser stores it beside its
own, only when not empty, so the checkpoint of a stateless rule is the one written before the registry).

A measure, per run: ``per_step`` measures (``class_step``) are taken at every class step of a window iteration,
on the step's augmented batch; the others (``inner_step``) once per inner step, after the class steps.
"""
from collections import namedtuple
from dataclasses import dataclass

from utils.errors import UserError

# the MDC switch that belongs to no entry: freezing finished subsets (MDC Table 3), the regulariser's own
FREEZE = "mls_freeze"


@dataclass(frozen=True)
class Option:
    """A hyper-parameter an entry reads: the flag ``--{name}`` of the MDC group, read as ``args.{name}``.
    ``type``: int, float, str or bool (a ``True``/``False`` flag); ``valid``: the range of a number
    (``utils/ranges.py``)."""
    name: str
    default: object
    type: type
    help: str
    valid: str | None = None
    choices: tuple | None = None


class Entry:
    """What every rule and measure declares (set by ``register``): ``name``, ``help`` (one phrase of the
    flag's help), ``tag`` (its part of the run folder's name: "" for the default entry, else ``_mls{name}``)
    and the hyper-parameters it reads (``hparams``, a tuple of ``Option``)."""
    name = help = tag = None
    hparams = ()

    @classmethod
    def folder_tag(cls, args):
        """The entry's part of the run folder's name: its tag, then ``_{name}{value}`` of every hyper-parameter
        not at its default."""
        return cls.tag + "".join(f"_{o.name}{getattr(args, o.name, o.default)}" for o in cls.hparams
                                 if getattr(args, o.name, o.default) != o.default)

    @classmethod
    def hparams_of(cls, args):
        """{name: value} of the entry's hyper-parameters in ``args``."""
        return {o.name: getattr(args, o.name, o.default) for o in cls.hparams}


class Rule(Entry):
    """An MLS selection rule (module docstring). ``needs_measure = False``: the rule reads no d̄, and the run
    measures nothing at its windows (``cur`` is then empty)."""
    needs_measure = True

    def __init__(self, ipc, key=0, **hparams):
        self.ipc, self.key = int(ipc), key  # key: the regulariser's random key (seed, and class when class-wise)
        for o in self.hparams:
            setattr(self, o.name, hparams.pop(o.name, o.default))
        if hparams:
            raise ValueError(f"--mls_select {self.name}: unknown hyper-parameters {sorted(hparams)}")

    def select(self, cur, it, prev):
        raise NotImplementedError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Measure(Entry):
    """An MLS measure (module docstring): one instance per run, built with the run's real sampler, its
    (local) classes, its arguments and the normalisation of its images. ``one_rank``: why the measure cannot
    run with ``--exact True`` over torchrun ranks, or None."""
    per_step = True
    one_rank = None

    def __init__(self, *, sampler=None, classes=(), args=None, norm=None):
        for name, value in self.hparams_of(args).items():
            setattr(self, name, value)

    def class_step(self, model, params, real, y_real, syn, y_syn, sizes, *, metric="mse", idx_from=0, idx_to=-1):
        """The measure of every prefix of ``sizes`` decoded images at one class step -> list[float]."""
        raise NotImplementedError

    def inner_step(self, model, synset, ipc):
        """Per class (local order): [the measure of IPC-x for x = 1..ipc-1], once per inner step."""
        raise NotImplementedError


class Registry(dict):
    """name -> entry class, in registration order (the order of the flag's choices)."""

    def __init__(self, base, what, flag, lead):
        super().__init__()
        self.base, self.what, self.flag, self.lead, self.default = base, what, flag, lead, None

    def register(self, name, *, help, default=False):
        """Class decorator: ``@register_rule("name", help="...")``."""
        def deco(cls):
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.flag} {name}: a registered entry is a subclass of {self.base.__name__}")
            if name in self:
                raise ValueError(f"{self.flag} {name} is registered already")
            taken = {o.name for e in (*RULES.values(), *MEASURES.values()) for o in e.hparams}
            clash = [o.name for o in cls.hparams if o.name in taken or o.name in SWITCHES]
            if clash:
                raise ValueError(f"{self.flag} {name}: hyper-parameter {clash[0]} is another entry's flag")
            cls.name, cls.help = name, help
            if default:
                self.default = name
            if cls.__dict__.get("tag") is None:
                cls.tag = "" if default else f"_mls{name}"
            self[name] = cls
            return cls
        return deco

    def unregister(self, name):
        """Remove an entry (a test's own rule, after the test)."""
        if name == self.default:
            raise ValueError(f"{self.flag} {name} is the default and stays registered")
        del self[name]

    def names(self):
        return list(self)

    def help(self):
        """The flag's help: its lead, then ``name = phrase`` of every entry."""
        return f"{self.lead}: " + ", ".join(f"{n} = {e.help}" for n, e in self.items())

    def of(self, name):
        """The entry of ``name``; a one-line error naming the registered ones."""
        if name not in self:
            raise UserError(f"{self.flag} {name!r} is not a {self.what}; use one of {', '.join(self)}")
        return self[name]


RULES = Registry(Rule, "selection rule", "--mls_select", "how the MLS is chosen each window (MDC Table 3)")
MEASURES = Registry(Measure, "measure", "--mls_metric", "the per-subset measure the MLS is chosen from (MDC Table 5)")
register_rule, register_measure = RULES.register, MEASURES.register
SWITCHES = ("mls_select", FREEZE, "mls_metric")  # the flags of the switches, in their order


# ------------------------------------------------------------------------------------------------
# what the rest of the project derives from the entries


def hparam_options():
    """(flag of the entry's kind, entry name, Option) of every registered hyper-parameter."""
    return [(reg.flag, n, o) for reg in (RULES, MEASURES) for n, e in reg.items() for o in e.hparams]


def number_keys():
    """The MLS settings that change the condensed numbers (``cli.options.NUMBER_KEYS``): the switches, then
    every entry's hyper-parameters."""
    return SWITCHES + tuple(o.name for _, _, o in hparam_options())


def _defaults():
    return {"mls_select": RULES.default, FREEZE: True, "mls_metric": MEASURES.default,
            **{o.name: o.default for _, _, o in hparam_options()}}


def check_switches(args):
    """The ablation check (``condensation/runner.py``): without ``--adaptive_reg True`` every MLS switch and
    hyper-parameter stays at its default; with it, a hyper-parameter is given only with its own entry."""
    given = [(k, getattr(args, k, d)) for k, d in _defaults().items() if getattr(args, k, d) != d]
    if not args.adaptive_reg:
        if given:
            raise UserError(f"{', '.join(f'--{k} {v}' for k, v in given)} switches a part of MDC's adaptive subset "
                            "loss: it needs --adaptive_reg True")
        return
    RULES.of(args.mls_select)
    MEASURES.of(args.mls_metric)
    for flag, name, o in hparam_options():
        chosen = getattr(args, flag[2:])
        if name != chosen and getattr(args, o.name, o.default) != o.default:
            raise UserError(f"--{o.name} is a hyper-parameter of {flag} {name}, but this run has {flag} {chosen}: "
                            f"pass {flag} {name} or drop --{o.name}")


def folder_tag(args):
    """The MLS part of an MDC run folder's name (``condensation.run_files.condense_tag``): the rule's tag,
    ``_nofreeze`` without freezing, the measure's tag (each empty at MDC's defaults)."""
    return (RULES.of(args.mls_select).folder_tag(args) + ("" if getattr(args, FREEZE) else "_nofreeze")
            + MEASURES.of(args.mls_metric).folder_tag(args))


def measure_of(args):
    """The measure entry a run measures its windows with, or None when its rule reads no measure."""
    return MEASURES.of(args.mls_metric) if RULES.of(args.mls_select).needs_measure else None


# ------------------------------------------------------------------------------------------------
# the ``mls`` record of metrics.jsonl (one per selection window)

MLSRecord = namedtuple("MLSRecord", "it class_wise mls dbar delta")
MLSRecord.__doc__ = """An ``mls`` record read back: ``mls``, ``dbar``, ``delta`` are per class when ``class_wise``,
else one-element lists (the one global decision); a missing d̄/Δ (an older or hand-written record) reads None."""


def mls_record(it, mls, dbar, delta, class_wise):
    """The ``mls`` record of the selection at ``it`` from the per-class lists: class-wise, the lists; else the
    first class's values (every class has the same global decision)."""
    if class_wise:
        return {"type": "mls", "it": it, "dbar": dbar, "delta": delta, "mls": mls}
    return {"type": "mls", "it": it, "dbar": dbar[0], "delta": delta[0], "mls": mls[0]}


def read_mls_record(rec):
    """``MLSRecord`` of an ``mls`` record (``mls_record``'s inverse)."""
    wise = isinstance(rec["mls"], list)
    if wise:
        n = len(rec["mls"])
        return MLSRecord(rec["it"], True, list(rec["mls"]), rec.get("dbar") or [None] * n,
                         rec.get("delta") or [None] * n)
    return MLSRecord(rec["it"], False, [rec["mls"]], [rec.get("dbar")], [rec.get("delta")])


def groups(r, classes):
    """(who, mls, d̄, Δ) of each decision of an ``MLSRecord``: ``class_{c}`` per class, or ``all``."""
    if r.class_wise:
        return list(zip([f"class_{c}" for c in classes], r.mls, r.dbar, r.delta))
    return [("all", r.mls[0], r.dbar[0], r.delta[0])]


def read_frozen(rec):
    """(class_wise, values) of a ``loss`` record's frozen prefixes (−1: none frozen); None when it has none."""
    frozen = rec.get("frozen")
    if isinstance(frozen, list):
        return True, list(frozen)
    if isinstance(frozen, int):
        return False, [frozen]
    return None


def first_of(values):
    """Class 0's value of a read record's list (None for an empty one)."""
    return values[0] if values else None


__all__ = ["FREEZE", "Option", "Entry", "Rule", "Measure", "Registry", "RULES", "MEASURES", "register_rule",
           "register_measure", "SWITCHES", "hparam_options", "number_keys", "check_switches", "folder_tag",
           "measure_of", "MLSRecord", "mls_record", "read_mls_record", "groups", "read_frozen", "first_of"]
