"""Field-by-field checks of what a file holds: one ``UserError`` line naming the file, the record (when the
file holds several), the field, what is wrong and the fix.

Each file format the project reads checks its fields in one place (its reader), with these helpers:

    rec = Fields(doc, "results.json", fix="remove the damaged record or re-run test.py", index=3)
    ipc = rec.get("ipc", int, lo=1)
    acc = rec.sub("results").sub("convnet").get("best", float, finite=True, lo=0, hi=100)

No imports beyond ``utils.errors`` and ``math``: readers that must stay torch-free can use it.
"""
import math

from utils.errors import UserError

_MISSING = object()
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
          dict: "a mapping", type(None): "null"}


def _type_name(types):
    return " or ".join(_NAMES.get(t, t.__name__) for t in types)


def _is(value, types):
    """``isinstance`` where a bool is never an int or a number, and an int is a number."""
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


class Fields:
    """One mapping read from ``source`` (a file name); ``index``: its position among the file's records;
    ``path``: the keys that led to it (for nested mappings). ``fix``: what the user can do, said at the end of
    every error."""

    def __init__(self, doc, source, fix, *, index=None, path=()):
        self.doc, self.source, self.fix, self.index, self.path = doc, str(source), fix, index, tuple(path)
        if not isinstance(doc, dict):
            self.fail(f"is {_describe(doc)}, not a mapping")

    def where(self, key=None):
        at = f"{self.source}: record {self.index}" if self.index is not None else self.source
        keys = [*self.path, key] if key is not None else list(self.path)
        return at + (": field '" + ".".join(str(k) for k in keys) + "'" if keys else "")

    def fail(self, problem, key=None):
        raise UserError(f"{self.where(key)} {problem}; {self.fix}")

    def has(self, key):
        return key in self.doc

    def get(self, key, types, *, default=_MISSING, finite=False, lo=None, hi=None, choices=None, nonempty=False):
        """The value of ``key``, checked: its type (``types``: a type or a tuple; an int is a number, a bool is
        neither), finiteness, range ``lo..hi`` (inclusive), ``choices``, non-emptiness. A missing key is an error
        unless a ``default`` is given."""
        types = types if isinstance(types, tuple) else (types,)
        if key not in self.doc:
            if default is _MISSING:
                self.fail("is missing", key)
            return default
        v = self.doc[key]
        if not _is(v, types):
            self.fail(f"is {_describe(v)}, expected {_type_name(types)}", key)
        check_value(v, lambda problem: self.fail(problem, key), finite=finite, lo=lo, hi=hi, choices=choices,
                    nonempty=nonempty)
        return v

    def sub(self, key, *, default=_MISSING):
        """The nested mapping under ``key`` as ``Fields`` (``default``: returned when the key is missing)."""
        if key not in self.doc and default is not _MISSING:
            return default
        v = self.get(key, dict)
        return Fields(v, self.source, self.fix, index=self.index, path=(*self.path, key))

    def items(self, key, types=None, **checks):
        """The list under ``key``, each element checked as ``get`` checks a value (``types`` None: unchecked)."""
        v = self.get(key, list)
        if types is not None:
            types = types if isinstance(types, tuple) else (types,)
            for i, x in enumerate(v):
                if not _is(x, types):
                    self.fail(f"[{i}] is {_describe(x)}, expected {_type_name(types)}", key)
                check_value(x, lambda problem, i=i: self.fail(f"[{i}] {problem}", key), **checks)
        return v


def check_value(v, fail, *, finite=False, lo=None, hi=None, choices=None, nonempty=False):
    """The checks of ``Fields.get`` on one value; ``fail(problem)`` raises."""
    if finite and isinstance(v, float) and not math.isfinite(v):
        fail(f"is {v} (not a finite number)")
    if lo is not None and _is(v, (float,)) and not v >= lo:
        fail(f"is {v}, below {lo}")
    if hi is not None and _is(v, (float,)) and not v <= hi:
        fail(f"is {v}, above {hi}")
    if choices is not None and v not in choices:
        fail(f"is {v!r}, not one of {', '.join(map(repr, choices))}")
    if nonempty and not v:
        fail("is empty")


def _describe(v):
    if isinstance(v, (dict, list)):
        return f"a list of {len(v)} items" if isinstance(v, list) else f"a mapping of {len(v)} keys"
    text = repr(v)
    return (text[:40] + "...") if len(text) > 43 else text
