"""Reading the reference's pickle formats without running code from the file.

The YOCO reference stores its training-dynamics logs (``td-ipc{IPC}.pickle``) and score files
(``data-score-ipc{IPC}-ep{E}.pickle``) with ``pickle.dump``, and CIFAR ships its batches as pickles;
users download such files from others. ``pickle.load`` would call any callable the file names, so
these files are read by ``RestrictedUnpickler``, which admits only what those formats contain:
builtin containers and numbers, ``collections.OrderedDict``, numpy arrays, dtypes and scalars, torch
tensors, and ``_codecs.encode(text, 'latin1')`` (how pickle protocols 0-2 store bytes). A torch tensor
pickles its storage as ``torch.storage._load_from_bytes(bytes)``, i.e. a nested ``torch.load``; that
call is replaced by ``torch.load(..., weights_only=True)``. Anything else is refused with a one-line
``UserError`` naming the file and the refused global, before it is called.

Every failure names what the file is (docs/failures.md, "Loading a file never runs code"): a file that
refers to code (``posix.system``, ``builtins.eval``, ...) is refused as such; one holding other Python
objects is refused because loading them could run code; a file cut short or with damaged bytes is
"truncated or damaged"; a folder, a missing or empty file, or a torch file given as a pickle say so.
``global_kind`` classifies a refused global for this module and for ``utils.files.load_torch``.
"""
import contextlib
import importlib.util
import io
import pickle
import pickletools
import re
import sys
import warnings

import torch

from utils.errors import UserError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format (and any zip archive)

# modules whose globals are code: a pickle naming one of them runs it when loaded
CODE_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "commands", "builtins", "__builtin__", "shutil", "importlib", "runpy",
    "socket", "pty", "ctypes", "code", "codeop", "pickle", "_pickle", "marshal", "types", "operator", "functools",
    "pydoc", "multiprocessing", "asyncio", "io", "_io", "tempfile", "pathlib", "signal", "platform", "posixpath",
    "ntpath", "timeit", "cProfile", "profile", "pdb", "bdb", "ssl", "http", "urllib", "ftplib", "smtplib",
    "telnetlib", "_posixsubprocess", "_thread", "threading", "inspect", "gc", "glob", "zipimport", "webbrowser",
    "ensurepip", "venv", "distutils", "setuptools", "pip", "_winapi", "msvcrt", "winreg"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def global_kind(name):
    """What a global ``name`` (``module.qualname``; a bare name is a builtin) that a loader refused says about
    the file: ``'damaged'`` (not a Python name: damaged bytes), ``'code'`` (a function of a module that runs
    code, or any builtin), ``'numpy'`` (a numpy object) or ``'object'`` (an instance of some other class)."""
    if not _NAME.fullmatch(name or ""):
        return "damaged"
    root = name.split(".", 1)[0]
    if root in CODE_MODULES:  # before the check below: protocol 2 writes Python 2 names (commands.getoutput)
        return "code"
    if not _may_exist(name):
        return "damaged"
    if "." not in name:  # torch names a builtin without its module
        return "code"
    if root == "numpy":
        return "numpy"
    return "object"


def _may_exist(name):
    """False when ``name`` surely names nothing: its module is loaded here but has no such attribute or submodule
    (a global garbled by damaged bytes or cut by a truncation, e.g. ``torch._utils._re``), or it is a bare name
    that is no builtin. Imports nothing; True when it cannot tell (a module not loaded here)."""
    parts = name.split(".")
    if len(parts) == 1:
        import builtins

        return hasattr(builtins, name)
    for i in range(len(parts) - 1, 0, -1):
        mod = ".".join(parts[:i])
        if mod == "__main__":
            return True  # a class of the script that wrote the file
        if mod in sys.modules:
            obj = sys.modules[mod]
            for j, part in enumerate(parts[i:], i):
                if hasattr(obj, part):
                    obj = getattr(obj, part)
                    continue
                try:  # a submodule not imported yet (finding it imports nothing new)
                    return importlib.util.find_spec(".".join(parts[:j + 1])) is not None
                except (ImportError, ValueError, AttributeError):
                    return False
            return True
    return True  # a module not loaded here (e.g. of another project): cannot tell


def pickle_globals(f, limit=64):
    """The globals (``module.name``) a pickle stream names, in order, at most ``limit``; stops quietly at the
    first damaged opcode. Reads the opcodes only: nothing is called."""
    found, memo, recent = [], {}, []
    try:
        for op, arg, _ in pickletools.genops(f):
            name = op.name
            if name == "GLOBAL":
                found.append(arg.replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(recent) >= 2 and all(isinstance(v, str) for v in recent[-2:]):
                found.append(f"{recent[-2]}.{recent[-1]}")
            if name in ("MEMOIZE",):
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(arg))
            elif isinstance(arg, str) and "UNICODE" in name:
                recent.append(arg)
            elif name not in ("FRAME", "PROTO", "MEMOIZE", "STOP"):
                recent.append(None)
            recent = recent[-2:]
            if len(found) >= limit:
                break
    except Exception:  # noqa: BLE001 -- damaged bytes: what was read before them is the answer
        pass
    return found


def _storage_from_bytes(data):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as pickle protocols 0-2 use it (bytes stored as latin-1 text), and only so."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {str(encoding)[:20]!r}")  # damaged bytes
    return text.encode("latin1")


def _allowed():
    """(module, name) -> the callable the unpickler may use."""
    import collections

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2.x / 1.x
    table = {("collections", "OrderedDict"): collections.OrderedDict,
             ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
             ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
             ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
             ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
             ("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # files written by numpy 1.x or 2.x
        table[(mod, "_reconstruct")] = core.multiarray._reconstruct
        table[(mod, "scalar")] = core.multiarray.scalar
    if hasattr(core.numeric, "_frombuffer"):  # arrays pickled with protocol 5
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            table[(mod, "_frombuffer")] = core.numeric._frombuffer
    for mod in ("builtins", "__builtin__"):  # containers that protocols 0-3 store by name (Python 3 / 2)
        for name, fn in (("set", set), ("frozenset", frozenset), ("bytearray", bytearray), ("complex", complex)):
            table[(mod, name)] = fn
    return table


class RefusedGlobal(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only the globals of the reference formats."""

    def __init__(self, f, **kw):
        super().__init__(f, **kw)
        self._table = _allowed()

    def find_class(self, module, name):
        fn = self._table.get((module, name))
        if fn is None:
            raise RefusedGlobal(f"{module}.{name}")
        return fn


@contextlib.contextmanager
def _quiet_unraisable():
    """No warnings and no "unraisable" tracebacks around the one-line error: numpy reports some errors of a damaged
    array pickle as "unraisable" (a traceback printed on stderr) besides the exception the load raises."""
    hook, sys.unraisablehook = sys.unraisablehook, lambda *a: None
    try:
        with warnings.catch_warnings():  # torch.load of a tensor's storage: "Detected pickle protocol ..."
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.unraisablehook = hook


def _first_line(e):
    """The first line of an exception's text, without terminal escape codes, at most 120 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    return (text.splitlines() or [""])[0][:120]


def load_pickle(path, what, **kw):
    """Unpickle ``path`` (a ``what``, for messages) with ``RestrictedUnpickler``; every failure is a
    one-line ``UserError`` that says what the file is (see the module docstring)."""
    try:
        with open(path, "rb") as f, _quiet_unraisable():
            head = f.read(4)
            f.seek(0)
            return RestrictedUnpickler(f, **kw).load()
    except IsADirectoryError:
        raise UserError(f"the {what} {path} is a folder, not a file; pass the {what} itself") from None
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found; check the path") from None
    except RefusedGlobal as e:
        kind = global_kind(str(e))
        if kind == "damaged":
            raise UserError(f"{path}: cannot read this {what} (it names the garbled global {str(e)[:60]!r}); the "
                            "file is truncated or damaged: regenerate it") from None
        if kind == "code":
            raise UserError(f"{path}: refused to load this {what}: it refers to the code {e}, which loading it "
                            f"would run and which a {what} never contains; do not use this file: use one produced by "
                            "this project or the reference code") from None
        raise UserError(f"{path}: refused to load this {what}: it holds Python objects of {e}, which a {what} never "
                        "contains (loading them could run code); use a file produced by this project or the "
                        "reference code") from None
    except OSError as e:
        raise UserError(f"cannot read the {what} {path} ({e.strerror}); check the file and its permissions") from None
    except Exception as e:  # noqa: BLE001 -- damaged bytes raise anything from EOFError to SystemError
        if head == b"":
            raise UserError(f"{path}: this {what} is empty (0 bytes); the file is truncated or damaged: regenerate "
                            "it") from None
        if head == ZIP_MAGIC:
            raise UserError(f"{path} is a zip archive (a torch file?), not a pickled {what}; pass the {what} "
                            "itself") from None
        why = type(e).__name__ + (f": {_first_line(e)}" if str(e).strip() else "")
        raise UserError(f"{path}: cannot read this {what} ({why}); the file is "
                        f"truncated or damaged (or not a {what} at all): regenerate it") from None
