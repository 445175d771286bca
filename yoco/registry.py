"""The YOCO registries: scores, selection rules and ``--pruning_key`` modifiers, and what is derived from them.

Every entry declares, where it is implemented, what the rest of the project reads of it:

* a **score** (``@register_score`` in ``yoco/scores.py``): the keys it writes to the score file (``Output``:
  per-image ``scores`` with their direction, "hard" when a high value marks a hard image and "easy" when it
  marks an easy one, as AUM's margin; a ``clustering``, index lists used as they are; other ``stats``), the
  values it reads (``inputs``: the arguments of ``compute_scores``, or keys and ``provides`` of other scores)
  and, for a key one prunes by, its ``--pruning_key`` base (``Base``). ``computation_order`` runs the scores
  in the order of their inputs, whatever the order they were registered in;
* a **selection rule** (``@register_rule`` in ``yoco/selection.py``): a function returning decoded indices, the
  kind of score values it reads, and the bases that select with it (``random``, ``ccs``); a score's base
  selects with the rule registered for its output's kind (``default_for``);
* a **modifier** (``register_modifier``, ``yoco/selection.py``): a token after the base and the ``PruneConfig``
  field it sets; a key carries at most one modifier per field, in any order.

Derived here: the accepted keys (``accepted_keys``: every base followed by every modifier sequence; reading a
key is a look-up in that table, by exact tokens), the score-file key's declaration (``output_of``), the bases in
the order of YOCO Table 1 (``pruning_bases``) and the report names of keys (``key_names``). From those, the
help and the refusal of ``--pruning_key`` (``yoco/selection.py``), the key names of ``evaluation/tables.py``
and the tests' expectations.

This module imports nothing of the project but ``utils.errors`` and no torch: the command line reads the
registries for ``-h``. ``yoco/selection.py`` imports ``yoco/scores.py``, so importing ``yoco.selection``
registers every entry.
"""
import graphlib
import itertools
import math
import re
from dataclasses import dataclass, field, replace
from typing import Callable

KINDS = ("scores", "clustering", "stats")
DIRECTIONS = ("hard", "easy")
_NAME = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*")


@dataclass(frozen=True)
class Base:
    """A ``--pruning_key`` base: its token, the score-file key it selects by and its selection without modifiers.

    ``key``: a template formatted with ``ipc_t`` (IPC_T) and ``topk`` (``"LBPE_top{topk}"``), or a pair of
    templates (imbalanced, balanced) for a base that reads another key when balanced (SSP), or None for a base
    that reads no score (``random``); "" on an ``Output``: that output's key. ``hard``: keep the hardest images;
    ``balance``: balanced construction (a quota per class). ``modifiers=False``: modifiers are accepted and
    ignored (``ccs``: the reference replaces the whole key). ``label``: the key's name in the reports (default:
    the name), ``variants``: the names of the modified keys the paper tables show (``{"_easy": "AUM (easy)"}``);
    ``row``: its row in YOCO Table 1 (report and help order; bases without one follow, by name). ``rule`` and
    ``reads`` are filled in by registration: the selection rule, and the kind of value the key holds."""
    name: str = ""
    key: object = ""
    hard: bool = True
    balance: bool = False
    modifiers: bool = True
    label: str = ""
    variants: dict = field(default_factory=dict)
    row: float = math.inf
    rule: str = ""
    reads: str | None = None

    def score_key(self, *, balance, ipc_t, topk):
        """The score-file key this base selects by, or None."""
        if self.key is None:
            return None
        k = self.key[bool(balance)] if isinstance(self.key, tuple) else self.key
        return k.format(ipc_t=ipc_t, topk=topk)


@dataclass(frozen=True)
class Output:
    """A key a score writes to the score file. ``pattern``: the key, where ``{name}`` stands for an integer
    (``kmeans_{n}``, ``LBPE_top{k}``); ``kind`` and ``direction`` (module docstring; None: the score's);
    ``base``: its ``--pruning_key`` base when one selects by it."""
    pattern: str
    kind: str | None = None
    direction: str | None = None
    base: Base | None = None

    def matches(self, key):
        return _regex(self.pattern).fullmatch(str(key)) is not None


@dataclass(frozen=True)
class Score:
    """A registered score: ``fn(**inputs) -> {name: value}`` returns some of its outputs' keys (none when the
    inputs it needs were not given) and the ``provides`` names, which other scores read and the file does not
    get."""
    name: str
    fn: Callable
    inputs: tuple
    outputs: tuple
    provides: tuple


@dataclass(frozen=True)
class Rule:
    """A registered selection rule: ``fn(values, cfg, sel) -> decoded indices`` (``yoco/selection.py``).
    ``reads``: the kind of score values it is given (None: it reads no score); ``flag``: the ``PruneConfig``
    flag that names it (the reference's ``random_selection``, CCS's ``stratified``); ``default_for``: the kind
    of output whose bases select with it; ``reads_ratio``: it reads the CCS cut-off ratio."""
    name: str
    fn: Callable
    reads: str | None
    flag: str | None
    default_for: str | None
    reads_ratio: bool


@dataclass(frozen=True)
class Modifier:
    """A ``--pruning_key`` modifier: ``token`` (``_hard``) sets ``PruneConfig.{field}`` to ``value``."""
    token: str
    field: str
    value: object


SCORES, RULES, BASES, MODIFIERS = {}, {}, {}, {}


def _regex(pattern):
    return re.compile("".join(r"\d+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{\w+\})", pattern)
                              if p))


def _literal(pattern):
    return "{" not in pattern


def _check_output(score, o):
    if o.kind not in KINDS:
        raise ValueError(f"score {score}: output {o.pattern!r} has kind {o.kind!r}, not one of {', '.join(KINDS)}")
    if (o.kind == "scores") != (o.direction is not None) or (o.direction is not None and o.direction not in DIRECTIONS):
        raise ValueError(f"score {score}: output {o.pattern!r} ({o.kind}) needs a direction in {DIRECTIONS} exactly "
                         "when it holds per-image scores")
    if o.base is not None and (o.kind == "stats" or not (_literal(o.pattern) or (o.base.name and o.base.key != ""))):
        raise ValueError(f"score {score}: output {o.pattern!r} cannot be a pruning base (a stats key, or a pattern "
                         "without the base's name and key)")


def _output_base(o):
    b = o.base
    name = b.name or o.pattern
    return replace(b, name=name, key=o.pattern if b.key == "" else b.key, label=b.label or name, reads=o.kind)


def _add_bases(bases):
    """Register ``bases``; refused (nothing registered) when a name is taken or two bases would accept the same key."""
    added = []
    try:
        for b in bases:
            if b.name in BASES or not _NAME.fullmatch(b.name):
                raise ValueError(f"pruning base {b.name!r} is registered already or is not a name of letters, digits "
                                 "and single underscores")
            BASES[b.name] = b
            added.append(b.name)
        accepted_keys()
    except ValueError:
        for n in added:
            del BASES[n]
        raise


def register_score(name, *, inputs, outputs=None, kind="scores", direction=None, provides=(), base=None):
    """Decorator: ``@register_score("el2n", inputs=("error_norms",), direction="hard")`` registers
    ``fn(**inputs) -> {key: value}``. ``outputs``: its keys (str or ``Output``; default: ``(name,)``), each of
    ``kind``/``direction`` unless it says otherwise; ``base``: the pruning base of a one-output score (a
    ``Base``, or True for one named after the key with the defaults: hardest first, imbalanced)."""
    outs = [o if isinstance(o, Output) else Output(o) for o in (outputs or (name,))]
    outs = [replace(o, kind=o.kind or kind) for o in outs]
    outs = tuple(replace(o, direction=o.direction or (direction if o.kind == "scores" else None)) for o in outs)
    if base is not None:
        if len(outs) != 1:
            raise ValueError(f"score {name}: base= is for a one-output score; give each Output its own base")
        outs = (replace(outs[0], base=Base() if base is True else base),)

    def deco(fn):
        if name in SCORES:
            raise ValueError(f"score {name!r} is registered already")
        for o in outs:
            _check_output(name, o)
        _add_bases([_output_base(o) for o in outs if o.base is not None])
        SCORES[name] = Score(name, fn, tuple(inputs), outs, tuple(provides))
        return fn
    return deco


def unregister_score(name):
    """Remove score ``name`` and its pruning bases (a test's own entries)."""
    for o in SCORES.pop(name).outputs:
        if o.base is not None:
            BASES.pop(_output_base(o).name, None)


def register_rule(name, *, reads, flag=None, default_for=None, reads_ratio=False, bases=()):
    """Decorator: ``@register_rule("random", reads=None, flag="random_selection", bases=(Base("random", ...),))``
    registers ``fn(values, cfg, sel) -> indices`` and the pruning bases that select with it."""
    if reads not in (None, "scores", "clustering") or default_for not in (None, reads):
        raise ValueError(f"rule {name}: reads {reads!r} / default_for {default_for!r}")

    def deco(fn):
        if name in RULES or (default_for and any(r.default_for == default_for for r in RULES.values())):
            raise ValueError(f"rule {name!r}: the name, or the default rule for {default_for}, is registered already")
        RULES[name] = Rule(name, fn, reads, flag, default_for, reads_ratio)
        try:
            _add_bases([replace(b, rule=name, reads=reads, label=b.label or b.name) for b in bases])
        except ValueError:
            del RULES[name]
            raise
        return fn
    return deco


def unregister_rule(name):
    """Remove rule ``name`` and the bases that select with it."""
    del RULES[name]
    for b in [b for b in BASES.values() if b.rule == name]:
        del BASES[b.name]


def register_modifier(token, field, value):
    """``register_modifier("_easy", "use_hard", False)``: ``_easy`` after a base sets ``use_hard`` to False."""
    if token in MODIFIERS or not re.fullmatch(r"_[A-Za-z0-9]+", token):
        raise ValueError(f"modifier {token!r} is registered already or is not _ followed by letters and digits")
    MODIFIERS[token] = Modifier(token, field, value)
    try:
        accepted_keys()
    except ValueError:
        del MODIFIERS[token]
        raise


# ----------------------------------------------------------------------------------------------------
# what is derived

def modifier_groups():
    """{field: [tokens]} in registration order: a key carries at most one token of each group."""
    groups = {}
    for m in MODIFIERS.values():
        groups.setdefault(m.field, []).append(m.token)
    return groups


def modifier_sequences():
    """Every accepted suffix with the settings it makes: "" and each sequence of at most one modifier per field,
    in any order."""
    groups = modifier_groups()
    out = []
    for r in range(len(groups) + 1):
        for fields in itertools.permutations(groups, r):
            for tokens in itertools.product(*(groups[f] for f in fields)):
                out.append(("".join(tokens), {MODIFIERS[t].field: MODIFIERS[t].value for t in tokens}))
    return out


def accepted_keys():
    """{key: (Base, settings)} of every accepted ``--pruning_key``. A key with two readings is refused at
    registration (a base named ``toy_hard`` beside a base ``toy``)."""
    table = {}
    for b in BASES.values():
        for suffix, settings in modifier_sequences():
            k = b.name + suffix
            if k in table:
                raise ValueError(f"--pruning_key {k!r} would read as base {table[k][0].name!r} and as {b.name!r}")
            table[k] = (b, settings)
    return table


def pruning_bases():
    """The bases in the order of YOCO Table 1 (``row``), then the others by name."""
    return sorted(BASES.values(), key=lambda b: (b.row, b.name))


def key_names():
    """{pruning key: its name in the reports}: every base's label and its named variants."""
    return {b.name + sfx: label for b in pruning_bases() for sfx, label in (("", b.label), *b.variants.items())}


def rule_of(base):
    """The selection rule of ``base``: its own, else the rule registered for the kind of its key."""
    if base.rule:
        return RULES[base.rule]
    return default_rule(base.reads)


def default_rule(kind):
    found = [r for r in RULES.values() if r.default_for == kind]
    if not found:
        raise ValueError(f"no selection rule is registered for {kind!r} outputs (yoco.selection registers them)")
    return found[0]


def output_of(key):
    """The ``Output`` that declares score-file key ``key`` (a literal declaration before a pattern), or None."""
    outs = [o for s in SCORES.values() for o in s.outputs]
    return (next((o for o in outs if _literal(o.pattern) and o.pattern == key), None)
            or next((o for o in outs if o.matches(key)), None))


def computation_order(given):
    """The registered scores in an order where each comes after the scores whose keys or ``provides`` it reads
    (a topological order of a graph built in name order: the order of registration does not matter). ``given``: the
    names ``compute_scores`` passes. An input nobody gives, a name written twice or a cycle is a ``ValueError``."""
    producer = {}
    for s in SCORES.values():
        for n in (*(o.pattern for o in s.outputs if _literal(o.pattern)), *s.provides):
            if n in producer or n in given:
                by = producer.get(n, "(an input)")
                raise ValueError(f"score {s.name}: {n!r} is also given or written by score {by}")
            producer[n] = s.name
    order = graphlib.TopologicalSorter()
    for name in sorted(SCORES):
        deps = []
        for i in SCORES[name].inputs:
            if i not in given and i not in producer:
                raise ValueError(f"score {name}: no score writes its input {i!r}, and compute_scores does not give it "
                                 f"({', '.join(sorted(given))})")
            deps += [] if i in given else [producer[i]]
        order.add(name, *sorted(set(deps)))
    try:
        return [SCORES[n] for n in order.static_order()]
    except graphlib.CycleError as e:
        raise ValueError(f"the scores' inputs form a cycle: {e.args[1]}") from None


def declared(score, key):
    """Whether ``key`` is one of ``score``'s outputs or ``provides``."""
    return key in score.provides or any(o.matches(key) for o in score.outputs)
