"""The pre-check of a table script: every job checked before anything starts (docs/reproducing.md#the-pre-check).

    python -m sweep.precheck [--deep] SCRIPT [ARGS...]       (scripts/lib.sh runs it; so does python -m sweep)

1. The script's own arguments and environment switches against their declarations: the ``#:`` lines of the
   script and of ``scripts/lib.sh`` (``#: arg NAME TYPE``, ``#: rest PROGRAM``, ``#: env NAME TYPE``; TYPE
   grammar in ``check_value``). The declaration is the only list of a switch's values.
2. The job list (``DRY_RUN=jobs``, ``sweep/jobs.py``), and every job's argv parsed by the parser of the
   program it calls (``get_args_parser`` + ``cli.arguments.parse_args``: presets, ranges, ``resolve``,
   ``check_together``); a top-level script is loaded from its file (its ``__main__`` block does not run),
   which imports no torch.
3. ``--deep`` (a real run, ``python -m sweep``): also the report steps' parsers and the argument checks each
   program's ``main`` runs before any work (its ``check_args``); these modules import torch (a few seconds).

A failure is one line ``error: SCRIPT: <what>; <fix>`` on stderr and exit status 2; nothing is written.
"""
import argparse
import contextlib
import importlib
import io
import os
import re
import runpy
import subprocess
import sys

from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "scripts", "lib.sh")
INNER = "_MDC_PRECHECKED"  # set for the dry run the pre-check reads: lib.sh does not check it again
DECL = re.compile(r"#:\s+(arg|rest|env)\s+(\S+)(?:\s+(\S+))?")


# ---- declarations --------------------------------------------------------------------------------------------
def declarations(script):
    """(positional args [(name, type)], rest program or None, env switches {name: type}) of a script: its own
    ``#:`` lines and lib.sh's (shared switches)."""
    args, rest, env = [], None, {}
    for path in (LIB, script):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise UserError(f"cannot read {path} ({e.strerror}); pass a reproduction script such as "
                            "scripts/mdc_table3.sh") from None
        for line in lines:
            m = DECL.match(line)
            if not m:
                continue
            kind, name, typ = m.groups()
            if kind == "arg":
                args.append((name, typ))
            elif kind == "rest":
                rest = name
            else:
                env[name] = typ
    return args, rest, env


def usage(script, args, rest):
    words = [f"[{n}]" for n, _ in args] + ([f"[EXTRA {rest} flags...]"] if rest else [])
    return f"bash {script} {' '.join(words)}".rstrip()


def describe(typ):
    if "|" in typ:
        return "one of " + ", ".join(typ.split("|"))
    if typ.startswith("int>="):
        return f"an integer >= {typ[5:]}"
    if typ.startswith("words:"):
        return f"a space-separated list, each {describe(typ[6:])}"
    if typ == "F:T":
        return "an IPC_F:IPC_T pair of integers with IPC_F > IPC_T >= 1 (e.g. 10:1)"
    if typ.startswith("re:"):
        return f"a name matching {typ[3:]}"
    if typ == "dir":
        return "an existing folder"
    return "any text"


def check_value(value, typ):
    """Whether ``value`` has the declared TYPE: ``a|b|c`` (one of), ``int>=K``, ``words:TYPE`` (a list separated
    by spaces), ``F:T`` (IPC pairs), ``re:REGEX``, ``dir`` (an existing folder), ``text``, ``flag:--opt`` (the
    value of a job flag: checked by the parser of the first job that has it, ``check_flag_values``)."""
    if "|" in typ:
        return value in typ.split("|")
    if typ.startswith("int>="):
        return bool(re.fullmatch(r"-?\d+", value)) and int(value) >= int(typ[5:])
    if typ.startswith("words:"):
        items = value.split()
        return bool(items) and all(check_value(v, typ[6:]) for v in items)
    if typ == "F:T":
        m = re.fullmatch(r"(\d+):(\d+)", value)
        return bool(m) and int(m.group(1)) > int(m.group(2)) >= 1
    if typ.startswith("re:"):
        return bool(re.fullmatch(typ[3:], value))
    if typ == "dir":
        return os.path.isdir(value)
    return True


def check_script_args(script, argv, env):
    """The positional arguments and environment switches of a script against its declarations; returns the
    ``flag:`` ones, [(label, value, option)], for ``check_flag_values`` once the jobs are known."""
    args, rest, switches = declarations(script)
    use = usage(script, args, rest)
    later = []
    for name, typ in sorted(switches.items()):
        value = env.get(name, "")
        if value and typ.startswith("flag:"):
            later.append((name, value, typ[5:]))
        elif value and not check_value(value, typ):
            raise UserError(f"{script}: {name}={value!r} is not {describe(typ)}; set {name} to a valid value, "
                            "or unset it for the default")
    words = list(argv)
    for i, (name, typ) in enumerate(args[:len(words)]):
        value = words[i]
        if value.startswith("-"):
            raise UserError(f"{script}: argument {i + 1} {value!r} is a flag where {name} goes: EXTRA flags come "
                            f"after the positional arguments; usage: {use}")
        if value and typ.startswith("flag:"):
            later.append((f"argument {i + 1} {name}", value, typ[5:]))
        elif value and not check_value(value, typ):
            raise UserError(f"{script}: argument {i + 1} {name}={value!r} is not {describe(typ)}; usage: {use}")
    extra = words[len(args):]
    if not args and rest is None:
        return later  # a script that declares no arguments (not one of scripts/): its arguments are its own
    if extra and (rest is None or not extra[0].startswith("-")):
        takes = f"EXTRA {rest} flags start with '-'" if rest else "the script takes no more arguments"
        raise UserError(f"{script}: unexpected argument {len(args) + 1} {extra[0]!r} ({takes}); drop it "
                        f"(usage: {use})")
    return later


# ---- the jobs ------------------------------------------------------------------------------------------------
class ParseFailure(Exception):
    pass


def _raise(msg):
    raise ParseFailure(msg)


def _exit(status=0, message=None):
    raise ParseFailure((message or "").strip() or "asks for help (-h): run the program's -h yourself")


_FACTORIES = {}


def program_of(cmd):
    """(key, factory loader, argv after the program, shown) of a python command of ours, else None: a top-level
    script of the project (loaded from its file, its ``__main__`` block not run) or a ``-m`` module of the
    project; ``srun [--opt=value ...] python ...`` (scripts/condense_mp.sbatch) counts as its python command."""
    argv = list(cmd.argv)
    if os.path.basename(argv[0]) == "srun":
        argv = argv[1:]
        while argv and argv[0].startswith("-"):
            argv = argv[1:]
    if not argv or not re.fullmatch(r"python[0-9.]*", os.path.basename(argv[0])):
        return None
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-m":
        i += 2 if argv[i] in ("-W", "-X") else 1
    if i >= len(argv):
        return None
    if argv[i] == "-m" and i + 1 < len(argv):
        name = argv[i + 1]
        top = os.path.join(ROOT, *name.split("."))
        if not (os.path.isfile(top + ".py") or os.path.isdir(top)):
            return None
        return name, lambda: vars(importlib.import_module(name)), argv[i + 2:], f"-m {name}"
    path = os.path.realpath(os.path.join(cmd.cwd, argv[i]))
    if os.path.dirname(path) != ROOT or not path.endswith(".py") or not os.path.isfile(path):
        return None  # not one of our scripts: never executed here
    with open(path, encoding="utf-8", errors="replace") as f:
        if "def get_args_parser" not in f.read():
            return None

    def load():
        return runpy.run_path(path, run_name="__precheck__")
    return path, load, argv[i + 1:], os.path.basename(path)


def namespace_of(key, load):
    """The program's names (``get_args_parser``, and ``check_args`` when it has one), loaded once."""
    if key not in _FACTORIES:
        _FACTORIES[key] = load()
    return _FACTORIES[key]


def parser_for(key, load):
    parser = namespace_of(key, load)["get_args_parser"]()
    parser.error, parser.exit = _raise, _exit  # one message instead of usage + exit
    return parser


def main_checks(key, load, args):
    """The argument checks the program's ``main`` runs before any work (its own ``check_args``, which needs no
    file); torch-importing."""
    checks = namespace_of(key, load).get("check_args")
    if checks is not None:
        checks(args)


def light_checks(program, args):
    """The torch-free part of the main checks (every dry run)."""
    if program == "test.py" and getattr(args, "slct_ipc", 0) > 0:
        from yoco.selection import check_pruning_key
        check_pruning_key(args.pruning_key)
    if program in ("condense_reg.py", "condense.py", "condense_reg_mp.py"):
        from condensation.mls import check_switches
        check_switches(args)


def check_job(cmd, deep=False):
    """Parse one command with its program's parser (and, ``deep``, its main's checks); a UserError naming it."""
    prog = program_of(cmd)
    if prog is None or (not deep and not prog[0].endswith(".py")):
        return None  # a dry run parses the top-level scripts' commands (torch-free), not the -m report steps
    key, load, argv, shown = prog
    from cli.arguments import parse_args

    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            args = parse_args(parser_for(key, load), argv)
            light_checks(cmd.program, args)
            if deep:
                main_checks(key, load, args)
    except (ParseFailure, UserError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UserError(f"job {cmd.name} ({cmd.program}, {_where(cmd)}): {msg}; fix the argument (python "
                        f"{shown} -h lists the options); "
                        "nothing was started") from None
    return args


def _where(cmd):
    """A short tag of the job for people: its output folder or data folder."""
    for f in ("--save_dir", "--test_data_dir", "--custom-data-dir", "--out", "--base-dir"):
        if f in cmd.argv and cmd.argv.index(f) + 1 < len(cmd.argv):
            return f"{f} {cmd.argv[cmd.argv.index(f) + 1]}"
    return f"stage {cmd.stage}"


def check_flag_values(script, later, cmds):
    """``flag:OPT`` arguments and switches (DATASET, EPOCHS, PRECISION): the value is given to the jobs' OPT, so
    it is checked alone with the parser of the first job that has OPT (type, choices, range), named by the
    argument or switch."""
    from utils import ranges

    for label, value, opt in later:
        for cmd in cmds:
            prog = program_of(cmd)
            if prog is None or not prog[0].endswith(".py") or opt not in cmd.argv:
                continue
            parser = parser_for(prog[0], prog[1])
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    dest = next(a.dest for a in parser._actions if opt in a.option_strings)
                    ranges.check(parser, argparse.Namespace(**{dest: getattr(parser.parse_args([opt, value]), dest)}))
            except (ParseFailure, UserError) as e:
                name = label.split()[-1]
                raise UserError(f"{script}: {label}={value!r} is given to {cmd.program} {opt}: {e}; set {name} to "
                                f"a valid {opt} value (python {prog[3]} -h)") from None
            break


def precheck(script, argv, env=None, deep=False):
    """Check a script invocation (see the module docstring); returns the stages of its job list."""
    from sweep.jobs import read_job_list

    env = dict(os.environ if env is None else env)
    if not os.path.isfile(script):
        raise UserError(f"no script {script}; pass a reproduction script such as scripts/mdc_table3.sh")
    later = check_script_args(script, argv, env)
    denv = dict(env, DRY_RUN="jobs", **{INNER: "1"})
    try:
        p = subprocess.run(["bash", script, *argv], env=denv, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=300)
    except subprocess.TimeoutExpired:
        raise UserError(f"the dry run of {script} did not finish in 300 s; check `DRY_RUN=1 bash {script}`") from None
    out, err = (p.stdout.decode("utf-8", "surrogateescape"), p.stderr.decode("utf-8", "surrogateescape"))
    if p.returncode != 0:
        msg = (err.strip().splitlines() or ["(no message)"])[-1]
        raise UserError(msg[len("error: "):] if msg.startswith("error: ") else f"{script}: {msg}")
    stages, _ = read_job_list(out, denv, script)
    cmds = [c for st in stages for c in st.commands]
    check_flag_values(script, later, cmds)
    for cmd in cmds:
        check_job(cmd, deep)
    return stages


def cli(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    deep = bool(argv) and argv[0] == "--deep"
    argv = argv[1:] if deep else argv
    if not argv:
        print("usage: python -m sweep.precheck [--deep] SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    try:
        precheck(argv[0], argv[1:], deep=deep)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # the project's requirements are not installed (yet)
        print(f"error: the pre-check of {argv[0]} needs the project's requirements ({e}); pip install -r "
              "requirements.txt, or run the script without DRY_RUN (it installs them first)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
