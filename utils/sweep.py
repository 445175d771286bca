"""Run the commands of a reproduction script (scripts/*.sh) over the local GPUs.

    python -m utils.sweep scripts/mdc_table3.sh [SCRIPT ARGS...] [--gpus 0,1,2,3 | --gpus cpu [--cpu_slots N]]
                          [--logs DIR] [--force] [--list]

The command list is the script's own dry run (``DRY_RUN=1 bash SCRIPT ARGS``), read line by line:

* **Commands** are the lines printed by ``run``/``run_tee`` of ``scripts/lib.sh`` (``printf '%q ' "$@"; echo``):
  a line that ends with that trailing space and reads as one simple shell command (words, quotes and
  escapes only: no unquoted ``| & ; < > ( ) $ ` * ? [ { } !``, no comment). Its first word must be a program
  the environment finds (else: error). Every other line (``== MDC ==``, ``total wall time: 0 s``) is a note
  the script echoes and is left out. A command is executed as its exact printed text by ``bash -c``, so
  bash itself undoes the quoting. (``run_tee FILE``'s copy to FILE is not part of its printed line: under the
  sweep that output is in the command's log only.)
* **Where and with what**: the commands run in the folder the script itself ends up in (``lib.sh`` changes
  into the project root or ``$WORKDIR``) with the variables it exports (``lib.sh``'s ``PYTHONPATH``), both
  read at the end of the dry run; the environment given to the sweep is passed to the dry run and to every
  command.
* **Jobs and steps**: a command with a ``--device`` flag (condensations, evaluations, dynamics, scores) is a
  *job* and gets one GPU (``CUDA_VISIBLE_DEVICES=<id>``; ``--gpus cpu``: ``CUDA_VISIBLE_DEVICES=""``, the
  script's own ``--device`` decides the rest). Any other command (``python -m evaluation.report``,
  ``evaluation.mls_trace``, ``rm``) is a *step*, run serially in its place, ``CUDA_VISIBLE_DEVICES`` as given.
* **Stages**: maximal runs of consecutive commands of the same program and kind (``condense_reg.py`` jobs,
  then ``test.py`` jobs, then the ``evaluation.report`` step, ...). Stages run in order; the jobs of a stage
  run in parallel, one per free GPU. After a stage with a failure no later stage starts.
* **Done markers**: after rc 0, ``<logs>/done/<command hash>-<environment hash>.json`` is written
  atomically (the hash of the folder + exact command text, and of the environment the command got, less
  the per-job ``CUDA_VISIBLE_DEVICES`` and the session/terminal variables of ``VOLATILE_ENV``). A later
  sweep skips a command whose marker exists; ``--force`` re-runs everything, ``--list`` shows done/pending.

Logs: ``<logs>/sNN-MMM-<program>.log`` (stage NN, its command MMM), default ``raid/sweeps/<script name>/``
in the folder the script runs its commands in. Exit status: 0 all done, 1 a command failed, 2 bad input,
130 interrupted (the running jobs' process groups are terminated).
"""
import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from utils.errors import UserError

DRY_RUN_TIMEOUT = 300
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of an interrupted job's process group
POLL = 0.05

# variables that describe the login session or terminal, not the work: left out of the done-marker key
# (a new ssh/tmux session must not re-run a finished sweep). CUDA_VISIBLE_DEVICES is assigned per job.
VOLATILE_ENV = {"CUDA_VISIBLE_DEVICES", "DRY_RUN", "PWD", "OLDPWD", "SHLVL", "_", "TERM", "COLORTERM", "COLUMNS",
                "LINES", "DISPLAY", "XAUTHORITY", "WINDOWID", "STY", "WINDOW", "LS_COLORS", "LSCOLORS", "GPG_TTY",
                "MAIL", "PS1", "PS2", "PROMPT_COMMAND", "MOTD_SHOWN", "INVOCATION_ID", "JOURNAL_STREAM",
                "MANAGERPID", "SYSTEMD_EXEC_PID", "FORCE_COLOR", "NO_COLOR", "TMPDIR", "SECURITYSESSIONID",
                "CONDA_PROMPT_MODIFIER", "CONDA_SHLVL", "GIT_ASKPASS", "WT_SESSION", "TERMINAL_EMULATOR"}
VOLATILE_PREFIXES = ("SSH_", "TMUX", "XDG_", "DBUS_", "TERM_", "VSCODE_", "KITTY_", "ITERM", "LC_TERMINAL",
                     "HIST", "PYTEST_", "SLURM_", "PBS_", "JPY_", "TQDM_", "__CF")

_SPECIAL = set("|&;<>()`*?[]{}!")  # unquoted in a word: not a line printed by `printf '%q '`
_PYTHON = re.compile(r"python[0-9.]*$")
_ANSI = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
         "\\": "\\", "'": "'", '"': '"', "?": "?"}


# ---- reading the dry run -------------------------------------------------------------------------------------
def split_command(line):
    """The words of ``line`` read as one simple shell command (backslash escapes, '...', "...", $'...'),
    or None when it is not one: an unquoted special character, an expansion, a comment, an open quote."""
    words, cur, word = [], [], False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t":
            if word:
                words.append("".join(cur))
                cur, word = [], False
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                return None
            cur.append(line[i + 1])
            word, i = True, i + 2
        elif c == "'":
            j = line.find("'", i + 1)
            if j < 0:
                return None
            cur.append(line[i + 1:j])
            word, i = True, j + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    return None
                d = line[i]
                if d == '"':
                    i += 1
                    break
                if d in "$`!":
                    return None
                if d == "\\" and i + 1 < n and line[i + 1] in '$`"\\':
                    cur.append(line[i + 1])
                    i += 2
                    continue
                cur.append(d)
                i += 1
            word = True
        elif c == "$":
            if not line.startswith("$'", i):
                return None
            i += 2
            while True:
                if i >= n:
                    return None
                d = line[i]
                if d == "'":
                    i += 1
                    break
                if d != "\\":
                    cur.append(d)
                    i += 1
                    continue
                e = line[i + 1] if i + 1 < n else ""
                if e in _ANSI:
                    cur.append(_ANSI[e])
                    i += 2
                elif e in "01234567":
                    m = re.match(r"[0-7]{1,3}", line[i + 1:])
                    cur.append(chr(int(m.group(), 8)))
                    i += 1 + len(m.group())
                elif e in "xuU":
                    m = re.match(r"[0-9a-fA-F]{1,%d}" % {"x": 2, "u": 4, "U": 8}[e], line[i + 2:])
                    if not m:
                        return None
                    cur.append(chr(int(m.group(), 16)))
                    i += 2 + len(m.group())
                else:
                    cur.append("\\" + e)
                    i += 2
            word = True
        elif c in _SPECIAL or (not word and c in "#~"):
            return None
        else:
            cur.append(c)
            word, i = True, i + 1
    if word:
        words.append("".join(cur))
    return words


def program_of(argv):
    """The program a command runs, for stages and log names: ``condense_reg.py``, ``evaluation.report``
    (``python -m``), ``python -c`` or the executable's name (``rm``)."""
    exe = os.path.basename(argv[0])
    if not _PYTHON.match(exe):
        return exe
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        if a == "-c":
            return "python -c"
        if a in ("-W", "-X"):
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return os.path.basename(a)
    return exe


def is_job(argv):
    """A command with a --device flag trains or scores on a device: it gets a GPU of its own."""
    return any(a == "--device" or a.startswith("--device=") for a in argv[1:])


@dataclass
class Command:
    text: str  # exactly as the dry run printed it (without the trailing space)
    argv: list
    program: str
    job: bool
    stage: int = 0
    index: int = 0  # 1-based within its stage
    status: str = "pending"  # pending | skipped | done | failed | interrupted | not run
    rc: int = None
    seconds: float = None
    slot: str = None

    @property
    def name(self):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.program)
        slug = slug[:-3] if slug.endswith(".py") else slug
        return f"s{self.stage:02d}-{self.index:03d}-{slug}"


@dataclass
class Stage:
    number: int
    program: str
    job: bool
    commands: list = field(default_factory=list)

    def describe(self):
        n = len(self.commands)
        kind = f"{n} job{'s' * (n != 1)} in parallel" if self.job else f"{n} step{'s' * (n != 1)}, serial"
        return f"stage {self.number}: {self.program} ({kind})"


def find_program(word, env, cwd):
    if "/" in word:
        p = word if os.path.isabs(word) else os.path.join(cwd, word)
        return os.path.isfile(p) and os.access(p, os.X_OK)
    return shutil.which(word, path=env.get("PATH", os.defpath)) is not None


def parse_dry_run(text, env=None, cwd="."):
    """(commands, notes) of a dry run's standard output (see the module docstring for the rule)."""
    env = os.environ if env is None else env
    commands, notes = [], []
    for line in text.splitlines():
        argv = split_command(line) if line.endswith(" ") else None
        if not argv:
            if line.strip():
                notes.append(line)
            continue
        if not find_program(argv[0], env, cwd):
            raise UserError(f"the dry run printed the command `{line.strip()}` but its program {argv[0]!r} is not "
                            "found here; install it or put it on PATH (the jobs run in this environment)")
        commands.append(Command(line.rstrip(" "), argv, program_of(argv), is_job(argv)))
    return commands, notes


def make_stages(commands):
    """Stages = maximal runs of consecutive commands of the same program and kind (job or step)."""
    stages = []
    for c in commands:
        if not stages or (stages[-1].program, stages[-1].job) != (c.program, c.job):
            stages.append(Stage(len(stages) + 1, c.program, c.job))
        st = stages[-1]
        st.commands.append(c)
        c.stage, c.index = st.number, len(st.commands)
    return stages


# the dry run under an EXIT trap that writes where the script ended up and what it exported, so the jobs
# run where and how the script would run them ($0 stays the script: its `$(dirname "$0")/lib.sh` works)
_CAPTURE = r"""__sweep_state=$1; shift
trap '__s=$?; { printf "%s\0" "$PWD"; for __n in $(compgen -e); do printf "%s=%s\0" "$__n" "${!__n-}"; done; } \
  > "$__sweep_state"; exit $__s' EXIT
. "$0" "$@"
"""
_SHELL_ONLY = {"PWD", "OLDPWD", "SHLVL", "_", "DRY_RUN"}


def dry_run(script, script_args=(), env=None, shown=None):
    """Run the script's dry run; returns (stdout, the folder its commands run in, their environment)."""
    shown = shown or script
    base = dict(os.environ if env is None else env)
    denv = dict(base, DRY_RUN="1")
    fd, state = tempfile.mkstemp(prefix="sweep_state_")
    os.close(fd)
    try:
        try:
            p = subprocess.run(["bash", "-c", _CAPTURE, script, state, *script_args], env=denv, text=True,
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=DRY_RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise UserError(f"the dry run of {shown} did not finish in {DRY_RUN_TIMEOUT} s; check that "
                            f"`DRY_RUN=1 bash {shown}` prints its commands and exits") from None
        if p.returncode != 0:
            msg = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise UserError(f"the dry run of {shown} failed (exit {p.returncode}): {msg} -- fix the script's "
                            f"arguments or environment (`DRY_RUN=1 bash {shown} ...` shows the same)")
        with open(state, "rb") as f:
            parts = f.read().decode("utf-8", "surrogateescape").split("\0")
    finally:
        os.unlink(state)
    cwd, exported = parts[0], dict(kv.split("=", 1) for kv in parts[1:] if "=" in kv)
    job_env = {k: v for k, v in base.items()  # less what the script unset (names bash could export)
               if k in exported or k in _SHELL_ONLY or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)}
    job_env.update({k: v for k, v in exported.items() if k not in _SHELL_ONLY})  # lib.sh's PYTHONPATH
    return p.stdout, cwd, job_env


def plan(script, script_args=(), env=None, shown=None):
    """(stages, notes, cwd, env) of a script's dry run (``shown``: the script's name in messages)."""
    out, cwd, job_env = dry_run(script, script_args, env, shown)
    commands, notes = parse_dry_run(out, job_env, cwd)
    if not commands:
        raise UserError(f"the dry run of {shown or script} printed no command; check its arguments "
                        f"(`DRY_RUN=1 bash {shown or script} ...` prints what it would run)")
    return make_stages(commands), notes, cwd, job_env


# ---- done markers --------------------------------------------------------------------------------------------
def _h(s, n):
    return hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def key_env(env):
    return {k: v for k, v in env.items() if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIXES)}


class Markers:
    """``<logs>/done/<command hash>-<environment hash>.json``: the command finished with rc 0 in a sweep.
    The marker lists the environment's variable names with a hash of each value (no values on disk)."""

    def __init__(self, logs, cwd, env):
        self.dir = os.path.join(logs, "done")
        self.cwd = cwd
        self.env = {k: _h(v, 12) for k, v in sorted(key_env(env).items())}
        self.env_hash = _h(json.dumps(self.env, sort_keys=True), 16)

    def cmd_hash(self, cmd):
        return _h(self.cwd + "\0" + cmd.text, 24)

    def path(self, cmd):
        return os.path.join(self.dir, f"{self.cmd_hash(cmd)}-{self.env_hash}.json")

    def done(self, cmd):
        return os.path.exists(self.path(cmd))

    def write(self, cmd):
        os.makedirs(self.dir, exist_ok=True)
        doc = {"command": cmd.text, "cwd": self.cwd, "env": self.env, "rc": cmd.rc, "seconds": cmd.seconds,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "log": cmd.name + ".log"}
        fd, tmp = tempfile.mkstemp(prefix=".tmp_marker_", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(cmd))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def why_pending(self, cmd):
        """For --list: the variables that differ from a run of the same command done in another environment."""
        prefix = self.cmd_hash(cmd) + "-"
        try:
            others = [n for n in os.listdir(self.dir) if n.startswith(prefix)]
        except OSError:
            return ""
        for name in others:
            try:
                with open(os.path.join(self.dir, name)) as f:
                    old = json.load(f)["env"]
            except (OSError, ValueError, KeyError):
                continue
            diff = sorted(k for k in set(old) | set(self.env) if old.get(k) != self.env.get(k))
            return f"done before in another environment ({', '.join(diff[:6])}{' ...' * (len(diff) > 6)} differ)"
        return ""


# ---- GPUs ----------------------------------------------------------------------------------------------------
def detect_gpus(env=None):
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
        if not ids or ids == ["-1"]:
            raise UserError("CUDA_VISIBLE_DEVICES is set but names no GPU; pass --gpus 0,1,... or --gpus cpu "
                            "(with --cpu_slots N) to run the jobs on the CPU")
        return ids
    smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    n = 0
    if smi:
        try:
            p = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
            n = sum(line.startswith("GPU ") for line in p.stdout.splitlines()) if p.returncode == 0 else 0
        except (OSError, subprocess.TimeoutExpired):
            n = 0
    if n == 0:
        raise UserError("no GPU found (CUDA_VISIBLE_DEVICES is not set and " +
                        ("`nvidia-smi -L` lists none" if smi else "nvidia-smi is not installed") +
                        "); pass --gpus 0,1,... or --gpus cpu (with --cpu_slots N) to run the jobs on the CPU")
    return [str(i) for i in range(n)]


def resolve_slots(gpus, cpu_slots, env=None):
    """[(label, CUDA_VISIBLE_DEVICES value)] of the parallel job slots."""
    if gpus is not None and gpus.strip().lower() == "cpu":
        n = 1 if cpu_slots is None else cpu_slots
        if n < 1:
            raise UserError(f"--cpu_slots {n}: the number of jobs to run at once on the CPU must be >= 1")
        return [(f"cpu{i + 1}", "") for i in range(n)]
    if cpu_slots is not None:
        raise UserError("--cpu_slots applies to --gpus cpu only; drop it, or pass --gpus cpu to run on the CPU")
    if gpus is None:
        ids = detect_gpus(env)
    else:
        ids = [g.strip() for g in gpus.split(",")]
        bad = [g for g in ids if not re.fullmatch(r"[A-Za-z0-9:/._-]+", g)]
        if bad or not ids:
            raise UserError(f"--gpus {gpus!r}: give GPU ids separated by commas (--gpus 0,1,2,3) or --gpus cpu")
        dup = sorted({g for g in ids if ids.count(g) > 1})
        if dup:
            raise UserError(f"--gpus {gpus}: GPU {', '.join(dup)} is listed twice; list each GPU once")
    return [(f"GPU {g}", g) for g in ids]


# ---- running -------------------------------------------------------------------------------------------------
def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Running:
    def __init__(self, cmd, proc, log, t0, slot):
        self.cmd, self.proc, self.log, self.t0, self.slot = cmd, proc, log, t0, slot


class Sweep:
    def __init__(self, stages, cwd, env, logs, markers, slots, force=False):
        self.stages, self.cwd, self.env, self.logs = stages, cwd, env, logs
        self.markers, self.slots, self.force = markers, slots, force
        self.running = []
        self.t0 = time.time()

    def log_path(self, cmd):
        return os.path.join(self.logs, cmd.name + ".log")

    def start(self, cmd, slot):
        label, visible = slot if slot else ("this host (step)", None)
        env = dict(self.env)
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        try:
            open(self.log_path(cmd), "w").close()
            log = open(self.log_path(cmd), "a")  # O_APPEND: the job's output and our lines never overwrite
        except OSError as e:
            raise UserError(f"cannot write the log {self.log_path(cmd)} ({e.strerror}); pass another --logs") from None
        log.write(f"# {cmd.text}\n# cwd: {self.cwd}\n# on: {label}"
                  f"{'' if visible is None else f' (CUDA_VISIBLE_DEVICES={visible!r})'}"
                  f"\n# started: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        try:
            proc = subprocess.Popen(["bash", "-c", "exec " + cmd.text], cwd=self.cwd, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            log.close()
            raise UserError(f"cannot start `{cmd.text}` in {self.cwd}: {e.strerror}") from None
        cmd.slot = label
        self.running.append(Running(cmd, proc, log, time.time(), slot))
        n = len(self.stages[cmd.stage - 1].commands)
        say(f"start  s{cmd.stage} {cmd.index}/{n} {cmd.program} on {label}  ({self.log_path(cmd)})")

    def finish(self, r, rc, interrupted=False):
        cmd = r.cmd
        cmd.rc, cmd.seconds = rc, time.time() - r.t0
        r.log.write(f"\n# exit status {rc} after {cmd.seconds:.1f} s\n")
        r.log.close()
        self.running.remove(r)
        n = len(self.stages[cmd.stage - 1].commands)
        if interrupted:
            cmd.status = "interrupted"
            say(f"killed s{cmd.stage} {cmd.index}/{n} {cmd.program} on {cmd.slot} (rc {rc}) after {cmd.seconds:.1f} s")
        elif rc == 0:
            cmd.status = "done"
            try:
                self.markers.write(cmd)
            except OSError as e:
                say(f"warning: cannot write the done marker of {cmd.name} in {self.markers.dir} ({e.strerror}): "
                    "a later sweep runs it again")
            say(f"done   s{cmd.stage} {cmd.index}/{n} {cmd.program} on {cmd.slot} in {cmd.seconds:.1f} s")
        else:
            cmd.status = "failed"
            say(f"FAILED s{cmd.stage} {cmd.index}/{n} {cmd.program} on {cmd.slot}: rc {rc} after "
                f"{cmd.seconds:.1f} s, log {self.log_path(cmd)}")

    def poll(self):
        for r in list(self.running):
            rc = r.proc.poll()
            if rc is not None:
                self.finish(r, rc)

    def run_stage(self, stage):
        todo = []
        for cmd in stage.commands:
            if not self.force and self.markers.done(cmd):
                cmd.status = "skipped"
            else:
                todo.append(cmd)
        skipped = len(stage.commands) - len(todo)
        say(f"{stage.describe()}: {len(todo)} to run" + (f", {skipped} done before (skipped)" if skipped else ""))
        if not stage.job:
            for cmd in todo:
                self.start(cmd, None)
                while self.running:
                    time.sleep(POLL)
                    self.poll()
            return
        free = list(self.slots)
        while todo or self.running:
            while todo and free:
                self.start(todo.pop(0), free.pop(0))
            time.sleep(POLL)
            before = {id(r): r.slot for r in self.running}
            self.poll()
            left = {id(r) for r in self.running}
            free.extend(slot for rid, slot in before.items() if rid not in left)
            free.sort(key=self.slots.index)

    def run(self):
        """Run every stage; returns the exit status (0, 1, 130)."""
        try:
            for stage in self.stages:
                self.run_stage(stage)
                if any(c.status == "failed" for c in stage.commands):
                    break
        except KeyboardInterrupt:
            print(flush=True)
            say(f"interrupted: terminating {len(self.running)} running job(s)")
            self.terminate()
            self.summary()
            return 130
        except BaseException:  # never leave jobs running behind a crashed sweep (they have their own sessions)
            self.terminate()
            raise
        self.summary()
        return 1 if self.failed() else 0

    def terminate(self):
        for r in self.running:
            try:
                os.killpg(r.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + KILL_GRACE
        try:
            while time.time() < deadline and any(r.proc.poll() is None for r in self.running):
                time.sleep(POLL)
        except KeyboardInterrupt:  # a second Ctrl-C: kill now
            pass
        for r in list(self.running):
            if r.proc.poll() is None:
                try:
                    os.killpg(r.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                r.proc.wait()
            self.finish(r, r.proc.returncode, interrupted=True)

    def failed(self):
        return [c for st in self.stages for c in st.commands if c.status in ("failed", "interrupted")]

    def summary(self):
        cmds = [c for st in self.stages for c in st.commands]
        for c in cmds:
            if c.status == "pending":
                c.status = "not run"
        count = {s: sum(c.status == s for c in cmds) for s in ("done", "skipped", "failed", "interrupted", "not run")}
        print(f"\nsweep summary ({len(cmds)} commands in {len(self.stages)} stages, {time.time() - self.t0:.1f} s): "
              + ", ".join(f"{n} {s}" for s, n in count.items() if n or s in ("done", "skipped", "failed")), flush=True)
        for c in self.failed():
            what = "interrupted" if c.status == "interrupted" else f"failed with rc {c.rc}"
            print(f"  {what}: stage {c.stage} #{c.index} on {c.slot}, log {self.log_path(c)}\n    {c.text}")
        not_run = [st for st in self.stages if any(c.status == "not run" for c in st.commands)]
        if not_run:
            print(f"  not run: stage{'s' * (len(not_run) > 1)} {', '.join(str(st.number) for st in not_run)} "
                  f"({count['not run']} commands); fix the failure and re-run the sweep: done commands are skipped")
        sys.stdout.flush()


# ---- command line --------------------------------------------------------------------------------------------
def get_args_parser():
    p = argparse.ArgumentParser(
        prog="python -m utils.sweep",
        description="Run a reproduction script's commands (its DRY_RUN=1 output) over the local GPUs: stages of "
                    "consecutive commands of one program run in order, the jobs of a stage in parallel, one per GPU. "
                    "Environment variables given to the sweep (BUDGET=cpu, DEVICE, OUT, ...) reach the dry run "
                    "and every job.",
        epilog="Script arguments that start with '-' (EXTRA flags) go after '--': "
               "python -m utils.sweep scripts/mdc_table3.sh --gpus 0,1 -- fashion 4 --niter 3")
    p.add_argument("script", help="a reproduction script, e.g. scripts/mdc_table3.sh")
    p.add_argument("script_args", nargs="*", metavar="SCRIPT_ARGS", help="the script's own arguments (dataset, N, ...)")
    p.add_argument("--gpus", default=None,
                   help="GPU ids, comma-separated (each job gets CUDA_VISIBLE_DEVICES=<id>), or 'cpu' "
                        "(default: CUDA_VISIBLE_DEVICES if set, else every GPU of `nvidia-smi -L`)")
    p.add_argument("--cpu_slots", type=int, default=None,
                   help="with --gpus cpu: jobs run at once on the CPU, each with CUDA_VISIBLE_DEVICES='' (default 1)")
    p.add_argument("--logs", default=None,
                   help="folder of the job logs and done markers (default raid/sweeps/<script name>/ in the folder "
                        "the script runs in)")
    p.add_argument("--force", action="store_true", help="re-run commands that finished in an earlier sweep")
    p.add_argument("--list", action="store_true", help="print the stages and commands (done/pending), run nothing")
    return p


def list_plan(stages, notes, markers, cwd, logs, force):
    cmds = [c for st in stages for c in st.commands]
    done = sum(markers.done(c) for c in cmds)
    print(f"{len(cmds)} commands in {len(stages)} stages, {done} done before{' (--force: all re-run)' * force}; "
          f"run in {cwd}; logs and done markers in {logs}")
    for st in stages:
        print(st.describe())
        for c in st.commands:
            state = "done" if markers.done(c) and not force else "pending"
            why = markers.why_pending(c) if state == "pending" and not force else ""
            print(f"  [{state}] {c.name}: {c.text}" + (f"\n      ({why})" if why else ""))
    if notes:
        print(f"({len(notes)} other line{'s' * (len(notes) != 1)} of the dry run are the script's notes, not commands)")


class _Lock:
    def __init__(self, logs):
        self.path = os.path.join(logs, ".sweep.lock")

    def __enter__(self):
        self.f = open(self.path, "a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.f.seek(0)
            who = self.f.read().strip()
            self.f.close()
            raise UserError(f"another sweep ({who or 'unknown pid'}) is using the logs folder "
                            f"{os.path.dirname(self.path)}; wait for it, or pass another --logs") from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"pid {os.getpid()}\n")
        self.f.flush()
        return self

    def __exit__(self, *exc):
        self.f.close()


def main(args):
    script = args.script
    if not os.path.isfile(script):
        raise UserError(f"no script {script}; pass a reproduction script such as scripts/mdc_table3.sh")
    slots = None if args.list and args.gpus is None and args.cpu_slots is None else \
        resolve_slots(args.gpus, args.cpu_slots)
    stages, notes, cwd, env = plan(os.path.abspath(script), args.script_args, shown=script)
    name = os.path.splitext(os.path.basename(script))[0]
    logs = os.path.abspath(args.logs) if args.logs else os.path.join(cwd, "raid", "sweeps", name)
    markers = Markers(logs, cwd, env)
    if args.list:
        list_plan(stages, notes, markers, cwd, logs, args.force)
        return 0
    try:
        os.makedirs(logs, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the logs folder {logs} ({e.strerror}); pass another --logs") from None
    if not os.access(logs, os.W_OK):
        raise UserError(f"the logs folder {logs} is not writable; pass another --logs")
    n = sum(len(st.commands) for st in stages)
    say(f"sweep {script}: {n} commands in {len(stages)} stages, jobs on {', '.join(s[0] for s in slots)}, run in "
        f"{cwd}; logs in {logs}")
    with _Lock(logs):
        return Sweep(stages, cwd, env, logs, markers, slots, args.force).run()


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def cli(argv=None):
    """Parse and run; a ``UserError`` is one line ``error: ...`` and exit status 2."""
    parser = get_args_parser()
    args = parser.parse_intermixed_args(argv)
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any job started (the dry run)
        print("error: interrupted before any job started", file=sys.stderr)
        return 130
    except BrokenPipeError:  # --list | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(cli())
