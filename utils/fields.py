"""Field-by-field checks of what a file holds: one ``UserError`` line naming the file, the record (when the
file holds several), the field, what is wrong and the fix.

Each file format the project reads checks its fields in one place (its reader), with these helpers:

    rec = Fields(doc, "results.json", fix="remove the damaged record or re-run test.py", index=3)
    ipc = rec.get("ipc", int, lo=1)
    acc = rec.sub("results").sub("convnet").get("best", float, finite=True, lo=0, hi=100)

A ``key`` is a mapping key, or a tuple of keys and list positions below the mapping (``("runs", 0, "best")``,
shown as ``runs[0].best``). ``valid``: a range in the option tables' language (``"-1 or >= 1"``, utils/ranges.py).
No imports beyond ``utils.errors``, ``utils.ranges`` and ``math``: readers that must stay torch-free can use it.
"""
import math

from utils.errors import UserError
from utils.ranges import Range

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

    def __init__(self, doc, source, fix, *, index=None, path=(), unit="record"):
        self.doc, self.source, self.fix, self.index, self.path = doc, str(source), fix, index, tuple(path)
        self.unit = unit  # what ``index`` counts: "record" (a list's position) or "line" (a JSON-lines file)
        if not isinstance(doc, dict):
            self.fail(f"is {_describe(doc)}, not a mapping")

    def where(self, key=None):
        at = f"{self.source}: {self.unit} {self.index}" if self.index is not None else self.source
        keys = [*self.path, *(key if isinstance(key, tuple) else () if key is None else (key,))]
        return at + (": field '" + _dotted(keys) + "'" if keys else "")

    def fail(self, problem, key=None):
        raise UserError(f"{self.where(key)} {problem}; {self.fix}")

    def has(self, key):
        return key in self.doc

    def get(self, key, types, *, default=_MISSING, **checks):
        """The value of ``key``, checked (``check``). A missing key is an error unless a ``default`` is given."""
        if key not in self.doc:
            if default is _MISSING:
                self.fail("is missing", key)
            return default
        return self.check(key, self.doc[key], types, **checks)

    def check(self, key, v, types, *, finite=False, lo=None, hi=None, valid=None, choices=None, nonempty=False):
        """``v`` (found at ``key``) checked: its type (``types``: a type or a tuple; an int is a number, a bool is
        neither, ``None`` stands for null), finiteness, range ``lo..hi`` (inclusive) or ``valid``, ``choices``,
        non-emptiness."""
        types = _types(types)
        if not _is(v, types):
            self.fail(f"is {_describe(v)}, expected {_type_name(types)}", key)
        check_value(v, lambda problem: self.fail(problem, key), finite=finite, lo=lo, hi=hi, valid=valid,
                    choices=choices, nonempty=nonempty)
        return v

    def sub(self, key, *, default=_MISSING):
        """The nested mapping under ``key`` as ``Fields`` (``default``: returned when the key is missing)."""
        if key not in self.doc and default is not _MISSING:
            return default
        v = self.get(key, dict)
        return Fields(v, self.source, self.fix, index=self.index, path=(*self.path, key), unit=self.unit)

    def items(self, key, types=None, *, default=_MISSING, nonempty=False, **checks):
        """The list under ``key``, each element checked as ``check`` checks a value (``types`` None: unchecked)."""
        v = self.get(key, list, default=default, nonempty=nonempty)
        if types is not None and v is not default:
            for i, x in enumerate(v):
                self.check((key, i), x, types, **checks)
        return v

    def each(self, key, *, default=_MISSING, nonempty=False):
        """The list of mappings under ``key``, each as ``Fields``."""
        v = self.items(key, dict, default=default, nonempty=nonempty)
        return [Fields(x, self.source, self.fix, index=self.index, path=(*self.path, key, i), unit=self.unit)
                for i, x in enumerate(v or [])]

    def tree(self, key, types, depth, *, default=_MISSING, **checks):
        """A value of ``types`` or a list of them, nested up to ``depth`` lists (``[1, [2, 3]]`` has depth 2),
        every leaf checked as ``check`` checks a value."""
        if key not in self.doc and default is not _MISSING:
            return default
        v = self.get(key, (*_types(types), list) if depth else types)
        stack = [((key,), v, depth)]  # (where, value, list levels it may still have)
        while stack:
            at, x, d = stack.pop()
            if isinstance(x, list) and d > 0:
                stack += [((*at, i), y, d - 1) for i, y in enumerate(x)]
            else:
                self.check(at, x, (*_types(types), list) if d > 0 else types, **checks)
        return v

    def like(self, key, template, **checks):
        """The value of ``key`` (None when missing), when present of the JSON type of ``template`` or null (an int
        is a number): a saved setting beside the command's own value (``template`` None: any value)."""
        kind = next((t for t in (bool, int, float, str, list, dict) if isinstance(template, t)), None)
        if key in self.doc and kind is not None:
            self.get(key, (kind, None), **checks)
        return self.doc.get(key)


def check_value(v, fail, *, finite=False, lo=None, hi=None, valid=None, choices=None, nonempty=False):
    """The checks of ``Fields.check`` on one value; ``fail(problem)`` raises."""
    if finite and isinstance(v, float) and not math.isfinite(v):
        fail(f"is {v} (not a finite number)")
    if lo is not None and _is(v, (float,)) and not v >= lo:
        fail(f"is {v}, below {lo}")
    if hi is not None and _is(v, (float,)) and not v <= hi:
        fail(f"is {v}, above {hi}")
    if valid is not None and _is(v, (float,)) and v not in Range(valid):
        fail(f"is {v}, not {valid}")
    if choices is not None and v not in choices:
        fail(f"is {v!r}, not one of {', '.join(map(repr, choices))}")
    if nonempty and not v:
        fail("is empty")


def _types(types):
    return tuple(type(None) if t is None else t for t in (types if isinstance(types, tuple) else (types,)))


def _dotted(keys):
    """``results.convnet.runs[0].best``: list positions in brackets."""
    return "".join(f"[{k}]" if isinstance(k, int) else ("." if i else "") + str(k) for i, k in enumerate(keys))


def _describe(v):
    if isinstance(v, (dict, list)):
        return f"a list of {len(v)} items" if isinstance(v, list) else f"a mapping of {len(v)} keys"
    text = repr(v)
    return (text[:40] + "...") if len(text) > 43 else text
