"""The valid values of every numeric option, declared once next to the option and checked before any work.

An option table declares ``valid="..."`` beside ``type=int`` / ``type=float``; ``ranged(add_argument)``
lets any parser or argument group take the keyword. The text is the rule and its message at once:

    ">= 1"   "> 0"   "[0, 1]"   "[0, 1)"   "-1 or >= 1"   "any"

(alternatives joined by ``or``; a bare number is that value; ``any`` is every finite number). ``check``
refuses, with a one-line ``UserError`` naming the flag, the value and the valid range, every value outside
its range and every non-finite float (``nan``, ``inf``) whatever its range: ``cli.arguments.parse_args``
calls it on every script's parsed arguments, so no script loads data with a value it would only trip
over later (or, worse, run with and report a meaningless number). ``None`` (an unset optional) passes.
No torch here: ``-h`` stays instant.
"""
import math
import re

from utils.errors import UserError

_BOUND = re.compile(r"(>=|>|<=|<)\s*(-?[\d.e+-]+)")
_INTERVAL = re.compile(r"([\[(])\s*(-?[\d.e+-]+)\s*,\s*(-?[\d.e+-]+)\s*([\])])")


def _number(text):
    v = float(text)
    return int(v) if v.is_integer() and "." not in text and "e" not in text else v


def _alternative(text):
    """A predicate for one alternative of a range text."""
    text = text.strip()
    if text == "any":
        return lambda v: True
    m = _BOUND.fullmatch(text)
    if m:
        op, b = m.group(1), _number(m.group(2))
        return {">=": lambda v: v >= b, ">": lambda v: v > b, "<=": lambda v: v <= b, "<": lambda v: v < b}[op]
    m = _INTERVAL.fullmatch(text)
    if m:
        lo, hi = _number(m.group(2)), _number(m.group(3))
        lo_ok = (lambda v: v >= lo) if m.group(1) == "[" else (lambda v: v > lo)
        hi_ok = (lambda v: v <= hi) if m.group(4) == "]" else (lambda v: v < hi)
        return lambda v: lo_ok(v) and hi_ok(v)
    try:
        value = _number(text)
    except ValueError:
        raise ValueError(f"bad range text {text!r}; see utils/ranges.py") from None
    return lambda v: v == value


class Range:
    """A declared range (module docstring): ``value in Range(">= 1")``; ``str`` gives the text back."""

    def __init__(self, text):
        self.text = text
        self.tests = [_alternative(t) for t in text.split(" or ")]

    def __contains__(self, value):
        return any(t(value) for t in self.tests)

    def __str__(self):
        return self.text


def ranged(add_argument):
    """``add_argument`` of a parser or group that also takes ``valid="<range>"`` (kept on the action)."""

    def add(*flags, valid=None, **kw):
        action = add_argument(*flags, **kw)
        action.valid = Range(valid) if isinstance(valid, str) else valid
        return action

    return add


def flag_name(action):
    """The long spelling of an option (``--batch_size``), for messages."""
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def check(parser, args):
    """Refuse, before any work, a value outside its declared range or a non-finite float (module docstring)."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if value is None or not action.option_strings or not isinstance(value, (int, float)) \
                or isinstance(value, bool):
            continue
        valid = getattr(action, "valid", None)
        if isinstance(value, float) and not math.isfinite(value):
            rule = f"pass a finite value {valid}" if valid and str(valid) != "any" else "pass a finite number"
            raise UserError(f"{flag_name(action)} {value}: not a finite number; {rule}")
        if valid is not None and value not in valid:
            if value == action.default:  # the user did not pass it: the script needs it here
                raise UserError(f"{flag_name(action)} is needed (its default {value} is not valid here): pass a "
                                f"value {valid}")
            raise UserError(f"{flag_name(action)} {value} is out of range: pass a value {valid}")
