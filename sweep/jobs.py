"""The job list of a reproduction script: what ``DRY_RUN=jobs bash scripts/X.sh ARGS`` prints, read as data.

Every command a table script would run is one JSON object on a line of its own (``scripts/lib.sh``,
``_job_record``)::

    {"argv": ["python3", "test.py", "--ipc", "10", ...], "cwd": "/abs/folder", "env": {"PYTHONPATH": "..."},
     "kind": "job", "stage": 2, "program": "test.py"}

* ``argv`` is run as it is (no shell), in ``cwd``, with the caller's environment plus ``env``;
* ``kind`` is ``job`` (it has a ``--device`` flag: it trains or scores on a device and gets one GPU) or
  ``step`` (a report, ``rm``: serial, no GPU of its own);
* ``stage``: the commands of one stage (a maximal run of consecutive commands of one program and kind) may
  run at once; stage k+1 starts when stage k is done;
* ``tee`` (optional): a file that also receives the command's output (``run_tee``).

Every other line of the dry run is a note the script echoes (``== MDC ==``). Every consumer reads this
form: the local runner and the Slurm backend (``sweep/local.py``, ``sweep/slurm.py``) and the tests.
"""
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from utils.errors import UserError

DRY_RUN_TIMEOUT = 300

# variables that describe the login session, terminal or scheduler, not the work: left out of the done-marker
# key (a new ssh/tmux session, or the node a Slurm job lands on, must not re-run a finished command).
# CUDA_VISIBLE_DEVICES is assigned per job.
VOLATILE_ENV = {"CUDA_VISIBLE_DEVICES", "DRY_RUN", "PWD", "OLDPWD", "SHLVL", "_", "TERM", "COLORTERM", "COLUMNS",
                "LINES", "DISPLAY", "XAUTHORITY", "WINDOWID", "STY", "WINDOW", "LS_COLORS", "LSCOLORS", "GPG_TTY",
                "MAIL", "PS1", "PS2", "PROMPT_COMMAND", "MOTD_SHOWN", "INVOCATION_ID", "JOURNAL_STREAM",
                "MANAGERPID", "SYSTEMD_EXEC_PID", "FORCE_COLOR", "NO_COLOR", "TMPDIR", "SECURITYSESSIONID",
                "CONDA_PROMPT_MODIFIER", "CONDA_SHLVL", "GIT_ASKPASS", "WT_SESSION", "TERMINAL_EMULATOR",
                "HOSTNAME", "ENVIRONMENT", "SUBMITIT_EXECUTOR", "OMPI_MCA_plm_slurm_args", "CUDA_DEVICE_ORDER",
                "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES"}
VOLATILE_PREFIXES = ("SSH_", "TMUX", "XDG_", "DBUS_", "TERM_", "VSCODE_", "KITTY_", "ITERM", "LC_TERMINAL",
                     "HIST", "PYTEST_", "SLURM", "PBS_", "JPY_", "TQDM_", "__CF", "SUBMITIT_")
FIELDS = {"argv": list, "cwd": str, "env": dict, "kind": str, "stage": int, "program": str}


@dataclass
class Command:
    argv: list
    cwd: str
    env: dict  # what the script adds to the caller's environment (lib.sh's PYTHONPATH)
    job: bool  # kind "job": gets a device of its own
    program: str
    stage: int = 0
    index: int = 0  # 1-based within its stage
    tee: str = None
    status: str = "pending"  # pending | skipped | done | failed | interrupted | not run
    rc: int = None
    seconds: float = None
    slot: str = None

    @property
    def text(self):
        """The command as one shell line, for people (logs, summaries); never parsed back."""
        return shlex.join(self.argv)

    @property
    def name(self):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.program)
        slug = slug[:-3] if slug.endswith(".py") else slug
        return f"s{self.stage:02d}-{self.index:03d}-{slug}"

    def record(self):
        """The job-list object of this command (what the dry run printed)."""
        doc = {"argv": self.argv, "cwd": self.cwd, "env": self.env, "kind": "job" if self.job else "step",
               "stage": self.stage, "program": self.program}
        return dict(doc, tee=self.tee) if self.tee else doc


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


def parse_record(line, where):
    """One job-list line -> Command; a malformed object is a UserError naming the line."""
    try:
        doc = json.loads(line)
    except ValueError as e:
        raise UserError(f"{where} is not a JSON object ({e}); the script's DRY_RUN=jobs output is damaged "
                        "(a script must print job objects only through lib.sh's run)") from None
    bad = [k for k, t in FIELDS.items() if not isinstance(doc.get(k) if isinstance(doc, dict) else None, t)]
    argv, env = (doc.get("argv"), doc.get("env")) if isinstance(doc, dict) else (None, None)
    if not bad:
        if not argv or not all(isinstance(a, str) for a in argv):
            bad.append("argv")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            bad.append("env")
        if doc["kind"] not in ("job", "step"):
            bad.append("kind")
        if doc["stage"] < 1 or not os.path.isabs(doc["cwd"]):
            bad.append("stage" if doc["stage"] < 1 else "cwd")
        if "tee" in doc and not isinstance(doc["tee"], str):
            bad.append("tee")
    if bad:
        raise UserError(f"{where} is not a job object (bad or missing {', '.join(bad)}); a script must print "
                        "job objects only through lib.sh's run")
    return Command(argv, doc["cwd"], env, doc["kind"] == "job", doc["program"], doc["stage"], tee=doc.get("tee"))


def find_program(word, env, cwd):
    if "/" in word:
        p = word if os.path.isabs(word) else os.path.join(cwd, word)
        return os.path.isfile(p) and os.access(p, os.X_OK)
    return shutil.which(word, path=env.get("PATH", os.defpath)) is not None


def read_job_list(text, env=None, shown="the script"):
    """(stages, notes) of a DRY_RUN=jobs output: the lines that start with ``{`` are commands, the other
    non-blank lines notes. Stages are numbered 1, 2, ... without gaps, each of one program and kind."""
    env = os.environ if env is None else env
    commands, notes = [], []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.startswith("{"):
            if line.strip():
                notes.append(line)
            continue
        cmd = parse_record(line, f"line {i} of the job list of {shown}")
        if not find_program(cmd.argv[0], dict(env, **cmd.env), cmd.cwd):
            raise UserError(f"{shown} lists the command `{cmd.text}` but its program {cmd.argv[0]!r} is not found "
                            "here; install it or put it on PATH (the jobs run in this environment)")
        commands.append(cmd)
    stages = []
    for c in commands:
        if not stages or c.stage != stages[-1].number:
            if c.stage != len(stages) + 1:
                raise UserError(f"the job list of {shown} numbers its stages out of order (stage {c.stage} after "
                                f"{len(stages)}); a script must print job objects only through lib.sh's run")
            stages.append(Stage(c.stage, c.program, c.job))
        st = stages[-1]
        if (c.program, c.job) != (st.program, st.job):
            raise UserError(f"the job list of {shown} mixes programs or kinds in stage {st.number} ({st.program} "
                            f"and {c.program}); a script must print job objects only through lib.sh's run")
        st.commands.append(c)
        c.index = len(st.commands)
    return stages, notes


def job_list(script, script_args=(), env=None, shown=None, deep=False):
    """Run ``DRY_RUN=jobs bash SCRIPT ARGS`` (nothing is installed, trained or written); returns
    (stages, notes). ``env`` reaches the dry run (BUDGET, DEVICE, OUT, ...). The dry run checks every job first
    (lib.sh's pre-check, ``sweep/precheck.py``); ``deep``: also each program's pre-work checks, as a real run."""
    shown = shown or script
    denv = dict(os.environ if env is None else env, DRY_RUN="jobs")
    if deep:
        denv["_MDC_PRECHECK_DEEP"] = "1"
    try:
        p = subprocess.run(["bash", script, *script_args], env=denv, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=DRY_RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UserError(f"the dry run of {shown} did not finish in {DRY_RUN_TIMEOUT} s; check that "
                        f"`DRY_RUN=jobs bash {shown}` prints its commands and exits") from None
    out, err = (p.stdout.decode("utf-8", "surrogateescape"), p.stderr.decode("utf-8", "surrogateescape"))
    if p.returncode != 0:
        msg = (err.strip().splitlines() or ["(no message)"])[-1]
        if msg.startswith("error: "):  # the script's (or its pre-check's) own message names the fix
            raise UserError(f"the dry run of {shown} failed (exit {p.returncode}): {msg[len('error: '):]}")
        raise UserError(f"the dry run of {shown} failed (exit {p.returncode}): {msg} -- fix the script's "
                        f"arguments or environment (`DRY_RUN=1 bash {shown} ...` shows the same)")
    stages, notes = read_job_list(out, denv, shown)
    if not stages:
        raise UserError(f"the dry run of {shown} printed no command; check its arguments "
                        f"(`DRY_RUN=1 bash {shown} ...` prints what it would run)")
    return stages, notes


def job_env(cmd, base=None):
    """The environment a command runs with: the caller's (``base``) plus what the script added."""
    return dict(os.environ if base is None else base, **cmd.env)


# ---- done markers --------------------------------------------------------------------------------------------
def _h(s, n):
    return hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def key_env(env):
    return {k: v for k, v in env.items() if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIXES)}


class Markers:
    """``<logs>/done/<command hash>-<environment hash>.json``: the command finished with rc 0 (in a local
    sweep or a Slurm job). The command hash covers its folder and argv; the environment hash the variables
    it ran with, less the session's and scheduler's (``VOLATILE_ENV``). The marker lists the variable names
    with a hash of each value (no values on disk)."""

    def __init__(self, logs, env):
        self.dir = os.path.join(logs, "done")
        self.env = {k: _h(v, 12) for k, v in sorted(key_env(env).items())}
        self.env_hash = _h(json.dumps(self.env, sort_keys=True), 16)

    def env_of(self, cmd):
        return dict(self.env, **{k: _h(v, 12) for k, v in key_env(cmd.env).items()})

    def cmd_hash(self, cmd):
        return _h(cmd.cwd + "\0" + json.dumps(cmd.argv), 24)

    def path(self, cmd):
        env_hash = _h(json.dumps(self.env_of(cmd), sort_keys=True), 16)
        return os.path.join(self.dir, f"{self.cmd_hash(cmd)}-{env_hash}.json")

    def done(self, cmd):
        return os.path.exists(self.path(cmd))

    def write(self, cmd, where=""):
        write_marker(self.path(cmd), {"command": cmd.argv, "cwd": cmd.cwd, "env": self.env_of(cmd), "rc": cmd.rc,
                                      "seconds": cmd.seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      "log": cmd.name + ".log", "on": where})

    def why_pending(self, cmd):
        """For --list: the variables that differ from a run of the same command done in another environment."""
        prefix = self.cmd_hash(cmd) + "-"
        try:
            others = [n for n in os.listdir(self.dir) if n.startswith(prefix)]
        except OSError:
            return ""
        mine = self.env_of(cmd)
        for name in others:
            try:
                with open(os.path.join(self.dir, name)) as f:
                    old = json.load(f)["env"]
            except (OSError, ValueError, KeyError):
                continue
            diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
            return f"done before in another environment ({', '.join(diff[:6])}{' ...' * (len(diff) > 6)} differ)"
        return ""


def write_marker(path, doc):
    """Write a small JSON file atomically (a reader never sees half of it; a crash leaves no partial file)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_marker_", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---- shared by the backends: logs, starting a command, the listing ------------------------------------------
def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def open_log(path, cmd, where, fresh=True):
    """The command's log, opened for appending (its output and our lines never overwrite each other), with
    a header: the command, its folder, where it runs, when it started. ``fresh``: empty it first."""
    if fresh:
        open(path, "w").close()
    log = open(path, "a")
    log.write(f"# {cmd.text}\n# cwd: {cmd.cwd}\n# on: {where}\n# started: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    log.flush()
    return log


def start_command(cmd, env, log):
    """Start the command's argv (no shell) in its folder, in a process group of its own, output to ``log``;
    a ``tee`` file (lib.sh's run_tee) receives a copy of the output through ``tee``."""
    argv = cmd.argv
    if cmd.tee:  # the command's exit status, not tee's, is the job's
        argv = ["bash", "-c", 'set -o pipefail; f=$1; shift; "$@" | tee "$f"', "bash", cmd.tee, *argv]
    return subprocess.Popen(argv, cwd=cmd.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def list_plan(stages, notes, markers, logs, force, state=None):
    """The stages and every command with its state: done/pending, or the Slurm state ``state(cmd)`` gives."""
    cmds = [c for st in stages for c in st.commands]
    done = sum(markers.done(c) for c in cmds)
    print(f"{len(cmds)} commands in {len(stages)} stages, {done} done before{' (--force: all re-run)' * force}; "
          f"run in {cmds[0].cwd}; logs and done markers in {logs}")
    for st in stages:
        print(st.describe())
        for c in st.commands:
            if markers.done(c) and not force:
                what, why = "done", ""
            else:
                what, why = state(c) if state else ("pending", "")
                why = why or (markers.why_pending(c) if not force else "")
            print(f"  [{what}] {c.name}: {c.text}" + (f"\n      ({why})" if why else ""))
    if notes:
        print(f"({len(notes)} other line{'s' * (len(notes) != 1)} of the dry run are the script's notes, not commands)")


class LogsLock:
    """One sweep or submission at a time per logs folder (``flock`` on ``<logs>/.sweep.lock``)."""

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


def make_logs(logs):
    try:
        os.makedirs(logs, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the logs folder {logs} ({e.strerror}); pass another --logs") from None
    if not os.access(logs, os.W_OK):
        raise UserError(f"the logs folder {logs} is not writable; pass another --logs")


