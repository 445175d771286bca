"""The Slurm backend of ``python -m sweep`` (``--backend slurm``): a whole table submitted at once.

    python -m sweep scripts/mdc_table1.sh --backend slurm --profile cluster.yaml -- cifar10 10
    python -m sweep scripts/mdc_table1.sh --backend slurm --list -- cifar10 10     # watch
    python -m sweep scripts/mdc_table1.sh --backend slurm --print -- cifar10 10    # plan, submit nothing

What it submits, through ``submitit`` (the established Python client of Slurm: it writes the sbatch file,
pickles the call, and requeues a job that is preempted or reaches its time limit):
* one **job array per stage** of the job list (``sweep/jobs.py``), task i = the stage's i-th command still to
  do; a stage of steps (reports) is one job that runs them in order;
* stage k+1 depends on stage k (``--dependency=afterok:<array>``, ``--kill-on-invalid-dep=yes``): a failed
  command cancels every later stage, so nothing runs on a broken input;
* each command writes the same log and done marker as the local backend (``<logs>/sNN-MMM-<program>.log``,
  ``<logs>/done/``), and a failure marker (``<logs>/failed/``) with its exit status and log; a second
  submission submits only what is not done (and refuses while commands of the table are still queued or
  running);
* a job preempted or at its time limit gets ``SIGUSR2`` (``signal_delay_s`` before the end): the command is
  stopped (``SIGTERM`` to its process group) and the job requeued; the requeued command resumes from its
  checkpoint (the tables pass ``--resume`` to condensations and dynamics; evaluations keep ``.partial``
  files), it does not start over.

Resources come from ``--profile FILE`` (YAML, keys = the flags without dashes) with the flags winning; see
``PROFILE_KEYS`` and docs/cluster.md. Bad resources (an unknown partition, more GPUs than its nodes have,
no ``sbatch`` on PATH) are a one-line error before anything is submitted.
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time

from utils.errors import UserError
from sweep.jobs import (LogsLock, job_env, list_plan, make_logs, open_log, say, start_command,
                        write_marker)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_GRACE = 20.0  # seconds between SIGTERM and SIGKILL of a command stopped for a requeue

# name: (type, help); the flags are --<name>, the profile's keys <name>
PROFILE_KEYS = {
    "partition": (str, "partition (default: the cluster's default partition)"),
    "account": (str, "account to charge (sbatch --account)"),
    "qos": (str, "quality of service (sbatch --qos)"),
    "time": (str, "time limit per job: minutes, or [D-]HH:MM[:SS] (default 24:00:00); a job at its limit is "
                  "requeued and resumes"),
    "gpus_per_job": (int, "GPUs per job (condensation, evaluation, dynamics, scores; default 1; steps get 0)"),
    "cpus_per_job": (int, "CPUs per job (default 4; steps get 1)"),
    "mem_per_job": (str, "memory per job, e.g. 32G (sbatch --mem; default: the partition's default)"),
    "constraint": (str, "node features (sbatch --constraint, e.g. a100)"),
    "array_parallelism": (int, "at most this many tasks of one job array run at once (default 64)"),
    "signal_delay_s": (int, "seconds before the time limit at which a job is stopped and requeued (default 120)"),
}
DEFAULTS = {"time": "24:00:00", "gpus_per_job": 1, "cpus_per_job": 4, "array_parallelism": 64, "signal_delay_s": 120}
# profile-only keys: overrides per program ({"test.py": {"time": "12:00:00"}}), for the steps, and shell lines
# run in every job before the command (module load ..., source venv/bin/activate)
EXTRA_KEYS = ("programs", "steps", "setup")
STEP_DEFAULTS = {"gpus_per_job": 0, "cpus_per_job": 1}


def stop_signal(rc):
    """The name of the signal that stopped a command of exit status ``rc``, or None: killed by it (``rc`` < 0), or
    ended by our scripts' own handler of SIGTERM/SIGINT (exit 128 + signal: 143, 130; cli.arguments.cli)."""
    if rc < 0:
        return signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
    if rc in (128 + signal.SIGTERM, 128 + signal.SIGINT):
        return signal.Signals(rc - 128).name
    return None


def add_arguments(g):
    g.add_argument("--profile", default=None, help="YAML cluster profile: partition, account, qos, time, "
                   "gpus_per_job, cpus_per_job, mem_per_job, constraint, array_parallelism, signal_delay_s, "
                   "programs (per-program overrides), steps (overrides for the report steps), setup (shell lines)")
    for name, (typ, text) in PROFILE_KEYS.items():
        g.add_argument(f"--{name}", type=typ, default=None, help=text)
    g.add_argument("--print", action="store_true", dest="print_only",
                   help="print the sbatch parameters and the job graph, submit nothing")


def refuse_flags(args):
    """With the local backend, a Slurm flag is a mistake: say so instead of ignoring it."""
    given = [n for n in (*PROFILE_KEYS, "profile") if getattr(args, n) is not None]
    if given or args.print_only:
        flag = f"--{given[0]}" if given else "--print"
        raise UserError(f"{flag} applies to --backend slurm; add --backend slurm, or drop it to run here")


# ---- resources -----------------------------------------------------------------------------------------------
def parse_time(value, where):
    """Slurm's time formats -> minutes (rounded up): M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if m:
        d, a, b, c = (int(x) if x is not None else None for x in m.groups())
        if d is not None:  # D-H[:M[:S]]
            secs = d * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
        elif c is not None:  # H:M:S
            secs = a * 3600 + b * 60 + c
        elif b is not None:  # M:S
            secs = a * 60 + b
        else:  # M
            secs = a * 60
        if secs > 0:
            return math.ceil(secs / 60)
    raise UserError(f"{where} {value!r} is not a Slurm time limit; use minutes (90) or [D-]HH:MM:SS (2-00:00:00)")


def _mem_mb(value, where):
    m = re.fullmatch(r"(\d+)([KMGT]?)B?", str(value).strip(), re.I)
    if not m or int(m.group(1)) == 0:
        raise UserError(f"{where} {value!r} is not a memory size; use e.g. 32G or 64000M")
    return int(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[m.group(2).upper()]


def _check(res, where):
    """Types and ranges of one resource mapping (profile or its overrides)."""
    for k, v in res.items():
        typ = PROFILE_KEYS[k][0]
        if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise UserError(f"{where}{k}: {v!r} is not a whole number; give e.g. {k}: {DEFAULTS.get(k, 1)}")
        if typ is str and not isinstance(v, (str, int)):
            raise UserError(f"{where}{k}: {v!r} is not a text value; give e.g. {k}: value")
        if typ is int and v < (0 if k == "gpus_per_job" else 1):
            raise UserError(f"{where}{k}: {v} is out of range; it must be >= {0 if k == 'gpus_per_job' else 1}")
    if "time" in res:
        parse_time(res["time"], f"{where}time:")
    if "mem_per_job" in res:
        _mem_mb(res["mem_per_job"], f"{where}mem_per_job:")


def resources(args):
    """The resources of the submission: defaults < profile < flags; every value checked."""
    prof = {}
    if args.profile:
        from utils.files import load_yaml_mapping

        prof = load_yaml_mapping(args.profile, "cluster profile", "fix the file (docs/cluster.md lists its keys)")
        unknown = sorted(set(prof) - set(PROFILE_KEYS) - set(EXTRA_KEYS))
        if unknown:
            raise UserError(f"the cluster profile {args.profile} has the unknown key {unknown[0]!r}; its keys are "
                            f"{', '.join([*PROFILE_KEYS, *EXTRA_KEYS])}")
    where = f"the cluster profile {args.profile}: " if args.profile else ""
    base = {k: v for k, v in prof.items() if k in PROFILE_KEYS and v is not None}
    _check(base, where)
    flags = {k: getattr(args, k) for k in PROFILE_KEYS if getattr(args, k) is not None}
    _check(flags, "--")
    res = {"base": dict(DEFAULTS, **base), "flags": flags, "programs": {}, "steps": {}, "setup": []}
    for key in ("programs", "steps"):
        sub = prof.get(key) or {}
        if not isinstance(sub, dict):
            raise UserError(f"{where}{key} must be a mapping; see docs/cluster.md")
    for prog, over in (prof.get("programs") or {}).items():
        if not isinstance(over, dict) or set(over) - set(PROFILE_KEYS):
            raise UserError(f"{where}programs: {prog}: give a mapping of {', '.join(PROFILE_KEYS)}")
        _check(over, f"{where}programs: {prog}: ")
        res["programs"][str(prog)] = over
    steps = prof.get("steps") or {}
    if set(steps) - set(PROFILE_KEYS):
        raise UserError(f"{where}steps: give a mapping of {', '.join(PROFILE_KEYS)}")
    _check(steps, f"{where}steps: ")
    res["steps"] = steps
    setup = prof.get("setup") or []
    if not isinstance(setup, list) or not all(isinstance(x, str) for x in setup):
        raise UserError(f"{where}setup must be a list of shell lines (e.g. - module load cuda)")
    res["setup"] = setup
    return res


def stage_resources(res, stage):
    """One stage's resources: defaults < the profile < its ``steps`` (a stage of steps) or ``programs``
    override < the flags (for steps, the flags that size a job, GPUs, CPUs and memory, do not apply)."""
    r = dict(res["base"])
    if not stage.job:
        r.update(STEP_DEFAULTS, **res["steps"])
    r.update(res["programs"].get(stage.program, {}))
    sizing = ("gpus_per_job", "cpus_per_job", "mem_per_job")
    r.update({k: v for k, v in res["flags"].items() if stage.job or k not in sizing})
    return r


# ---- the cluster ---------------------------------------------------------------------------------------------
def slurm_cmd(*argv, what):
    """Run a Slurm client command; a missing client or a failure is a one-line error."""
    exe = shutil.which(argv[0])
    if exe is None:
        raise UserError(f"{argv[0]} is not on PATH: --backend slurm runs where the Slurm commands are (a login "
                        "node of the cluster); use --backend local to run on this machine")
    try:
        p = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(argv)}` did not answer in 120 s: is the Slurm controller up?") from None
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UserError(f"{what} failed: `{' '.join(argv)}`: {msg}")
    return p.stdout


def partitions():
    """{partition: {"default": bool, "gpus": most GPUs of one node, "cpus": most CPUs, "mem": most MB}}."""
    out = slurm_cmd("sinfo", "-h", "-o", "%P|%G|%c|%m", what="reading the partitions")
    parts = {}
    for line in out.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        name, gres, cpus, mem = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = max([int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres)] or [0])
        p = parts.setdefault(name, {"default": False, "gpus": 0, "cpus": 0, "mem": 0})
        p["default"] |= default
        p["gpus"] = max(p["gpus"], gpus)
        p["cpus"] = max(p["cpus"], int(re.sub(r"\D.*", "", cpus) or 0))
        p["mem"] = max(p["mem"], int(re.sub(r"\D.*", "", mem) or 0))
    return parts


def check_cluster(res, stages):
    """Every stage's request fits a partition of this cluster: one-line errors before any submission."""
    slurm_cmd("sbatch", "--version", what="finding sbatch")
    parts = partitions()
    for st in stages:
        r = stage_resources(res, st)
        name = r.get("partition") or next((n for n, p in parts.items() if p["default"]), None)
        if name is None:
            raise UserError("the cluster has no default partition; pass --partition (or partition: in the "
                            f"profile); its partitions: {', '.join(sorted(parts)) or 'none'}")
        if name not in parts:
            raise UserError(f"partition {name!r} is not a partition of this cluster (sinfo lists "
                            f"{', '.join(sorted(parts)) or 'none'}); fix --partition or the profile's partition")
        p, what = parts[name], f"stage {st.number} ({st.program})"
        if r["gpus_per_job"] > p["gpus"]:
            raise UserError(f"{what} asks for {r['gpus_per_job']} GPUs per job but the nodes of partition {name} have "
                            f"{p['gpus'] or 'no'} GPUs; pass --gpus_per_job {p['gpus']} or another --partition")
        if r["cpus_per_job"] > p["cpus"]:
            raise UserError(f"{what} asks for {r['cpus_per_job']} CPUs per job but the nodes of partition {name} "
                            f"have {p['cpus']}; pass --cpus_per_job {p['cpus']} or another --partition")
        if r.get("mem_per_job") and _mem_mb(r["mem_per_job"], "mem_per_job") > p["mem"] > 0:
            raise UserError(f"{what} asks for {r['mem_per_job']} per job but the nodes of partition {name} have "
                            f"{p['mem']}M; pass a smaller --mem_per_job")


def sbatch_parameters(res, stage, name, dependency):
    """submitit's SlurmExecutor parameters of one stage (the sbatch flags, one per key)."""
    r = stage_resources(res, stage)
    params = {"job_name": f"{name}-s{stage.number:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stage.program)}",
              "time": parse_time(r["time"], "time"), "cpus_per_task": r["cpus_per_job"],
              "signal_delay_s": r["signal_delay_s"], "array_parallelism": r["array_parallelism"],
              "setup": [f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}", *res["setup"]],
              "additional_parameters": {"requeue": True}}
    if r["gpus_per_job"]:
        params["gpus_per_node"] = r["gpus_per_job"]
    for key, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                      ("constraint", "constraint"), ("mem_per_job", "mem")):
        if r.get(key):
            params[flag] = str(r[key])
    if dependency:
        params["additional_parameters"].update({"dependency": f"afterok:{dependency}", "kill-on-invalid-dep": "yes"})
    return params


# ---- the job: one command (an array task) or the steps of a stage, on a node --------------------------------
class CommandJob:
    """What a Slurm job runs: its commands in order (one for an array task), each with the local backend's
    log and done marker, skipping those done before (a requeued job of steps continues where it stopped).
    A failing command writes its failure marker and fails the job (``afterok`` then cancels the later
    stages). On ``SIGUSR2`` (preemption, time limit) submitit calls ``checkpoint``: the command is stopped and
    the job requeued with the same call; the command resumes from its own checkpoint."""

    def __init__(self):
        self.proc = None

    def __call__(self, items):
        host = os.uname().nodename
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "?"))
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        where = f"Slurm job {job}{'_' + task if task else ''} on {host}"
        for cmd, log_path, done_path, failed_path, marker in items:
            if os.path.exists(done_path):
                continue
            t0 = time.time()
            with open_log(log_path, cmd, where, fresh=False) as log:  # a requeued run appends to its log
                self.proc = start_command(cmd, job_env(cmd), log)
                while self.proc.poll() is None:  # not wait(): checkpoint() must be able to reap it meanwhile
                    time.sleep(0.5)
                rc, self.proc = self.proc.returncode, None
                log.write(f"\n# exit status {rc} after {time.time() - t0:.1f} s\n")
            doc = dict(marker, rc=rc, seconds=round(time.time() - t0, 1), on=where,
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            stop = stop_signal(rc)
            if stop:  # scancel, preemption, the time limit (Slurm's SIGTERM)
                doc["signal"] = stop
            if rc != 0:
                write_marker(failed_path, doc)
                raise RuntimeError(f"`{cmd.text}` failed with exit status {rc}; log {log_path}")
            write_marker(done_path, doc)
            if os.path.exists(failed_path):
                os.unlink(failed_path)

    def checkpoint(self, items):
        """Stop the running command (its process group: SIGTERM, then SIGKILL) and requeue the same call."""
        import submitit

        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(KILL_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        fresh = CommandJob()
        return submitit.helpers.DelayedSubmission(fresh, items)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.proc = None


# ---- submission and state ------------------------------------------------------------------------------------
MAX_REQUEUES = 50  # time-limit requeues per job (submitit's max_num_timeout); preemptions are not counted


def items(cmds, markers, logs):
    """What CommandJob gets per command: (command, log, done marker, failure marker, marker contents)."""
    out = []
    for c in cmds:
        done = markers.path(c)
        out.append((c, os.path.join(logs, c.name + ".log"), done, os.path.join(logs, "failed", os.path.basename(done)),
                    {"command": c.argv, "cwd": c.cwd, "env": markers.env_of(c), "log": c.name + ".log"}))
    return out


class Submissions:
    """``<logs>/slurm/jobs.json``: the Slurm job of every submitted command (by its done-marker name)."""

    def __init__(self, logs):
        self.path = os.path.join(logs, "slurm", "jobs.json")
        try:
            with open(self.path) as f:
                self.jobs = json.load(f)
            if not isinstance(self.jobs, dict):
                raise ValueError
        except FileNotFoundError:
            self.jobs = {}
        except (OSError, ValueError):
            raise UserError(f"{self.path} is damaged; delete it (the done markers stay: a new submission runs "
                            "only what is not done)") from None

    def save(self):
        write_marker(self.path, self.jobs)


def live_jobs():
    """{job id ("123" or "123_4"): (state, reason)} of this user's queued and running jobs."""
    out = slurm_cmd("squeue", "-h", "-r", "--me", "-o", "%i|%T|%r", what="reading the queue")
    live = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            live[parts[0]] = (parts[1], parts[2])
    return live


def command_state(cmd, markers, logs, subs, live):
    """(state, detail) of a command not done: failed / queued / running / not run / pending."""
    key = os.path.basename(markers.path(cmd))
    log = os.path.join(logs, cmd.name + ".log")
    failed = os.path.join(logs, "failed", key)
    rec = subs.jobs.get(key)
    if os.path.exists(failed):
        try:
            with open(failed) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            doc = {}
        slurm_log = f"; Slurm log {rec['slurm_log']}" if rec else ""
        if doc.get("signal"):
            return "stopped", (f"killed by {doc['signal']} (scancel, preemption or the time limit), log {log}; submit "
                               "again: it resumes")
        return "failed", f"exit status {doc.get('rc', '?')}, log {log}{slurm_log}"
    if rec is None:
        return "pending", "not submitted"
    if rec["job"] in live:
        state, reason = live[rec["job"]]
        state = {"PENDING": "queued", "RUNNING": "running"}.get(state, state.lower())
        return state, f"job {rec['job']}{f' ({reason})' if reason not in ('None', '') else ''}, log {log}"
    return "not run", (f"job {rec['job']} ended without finishing it (cancelled, or an earlier stage failed); "
                       "submit again")


def print_plan(stages, todo, res, name, markers, logs):
    """--print: the job graph and the sbatch parameters of every stage, nothing submitted."""
    n = sum(len(st.commands) for st in stages)
    print(f"{name}: {n} commands in {len(stages)} stages, {n - sum(map(len, todo.values()))} done before; logs and "
          f"done markers in {logs}; nothing submitted (--print)")
    prev = None
    for st in stages:
        cmds = todo[st.number]
        if not cmds:
            print(f"{st.describe()}: all done, not submitted")
            continue
        params = sbatch_parameters(res, st, name, prev and f"<stage {prev}>")
        shape = (f"1 job array of {len(cmds)} task{'s' * (len(cmds) != 1)} (at most {params['array_parallelism']} "
                 "at once)" if st.job else f"1 job running {len(cmds)} step{'s' * (len(cmds) != 1)} in order")
        print(f"{st.describe()}: {shape}{f', after stage {prev} (afterok)' if prev else ''}")
        print("  sbatch " + " ".join(sbatch_flags(params)))
        for c in cmds:
            print(f"  {c.name}: {c.text}")
        prev = st.number


def sbatch_flags(params):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in params.items()
             if k not in ("setup", "additional_parameters", "signal_delay_s", "array_parallelism")]
    flags.append(f"--signal=USR2@{params['signal_delay_s']}")
    flags += [f"--{k}" if v is True else f"--{k}={v}" for k, v in params["additional_parameters"].items()]
    return flags


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("submitit is not installed (the Slurm backend's client): pip install -r "
                        "requirements-slurm.txt") from None
    return submitit


def submit(stages, todo, res, name, markers, logs):
    """Submit every stage with work left, each after the previous one; returns [(stage, job id, count)]."""
    submitit = require_submitit()

    subs = Submissions(logs)
    folder = os.path.join(logs, "slurm")
    out, prev = [], None
    for st in stages:
        cmds = todo[st.number]
        if not cmds:
            continue
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        ex.update_parameters(**sbatch_parameters(res, st, name, prev))
        its = items(cmds, markers, logs)
        try:
            jobs = ex.map_array(CommandJob(), [[it] for it in its]) if st.job else [ex.submit(CommandJob(), its)]
        except Exception as e:  # submitit raises on a refused sbatch: name the stage, the jobs before it stand
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            done = ", ".join(f"stage {s} = job {j}" for s, j, _ in out) or "nothing"
            raise UserError(f"sbatch refused stage {st.number} ({st.program}): {msg}; submitted before it: "
                            f"{done} (scancel them, fix the resources, submit again)") from None
        for job, c in zip(jobs * (1 if st.job else len(cmds)), cmds):
            subs.jobs[os.path.basename(markers.path(c))] = {
                "job": job.job_id, "stage": st.number, "log": os.path.join(logs, c.name + ".log"),
                "slurm_log": str(job.paths.stdout), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
        prev = jobs[0].job_id.split("_")[0]
        out.append((st.number, prev, len(cmds)))
        subs.save()
    return out


def main(args, res, stages, notes, markers, logs, name, env):
    """--backend slurm: --list, --print, or submit what is not done."""
    if args.list:
        subs, live = Submissions(logs), live_jobs()
        list_plan(stages, notes, markers, logs, args.force, lambda c: command_state(c, markers, logs, subs, live))
        return 0
    todo = {st.number: [c for c in st.commands if args.force or not markers.done(c)] for st in stages}
    if args.print_only:
        print_plan(stages, todo, res, name, markers, logs)
        return 0
    require_submitit()
    check_cluster(res, stages)
    if not any(todo.values()):
        say(f"{name}: all {sum(len(st.commands) for st in stages)} commands are done; nothing to submit "
            "(--force submits them again)")
        return 0
    make_logs(logs)
    with LogsLock(logs):
        subs, live = Submissions(logs), live_jobs()
        busy = sorted({r["job"].split("_")[0] for r in subs.jobs.values() if r["job"] in live})
        if busy:
            raise UserError(f"jobs {', '.join(busy)} of this table are still queued or running; wait for them "
                            f"(--list shows each command) or cancel them (scancel {' '.join(busy)}), then submit again")
        for cmds in todo.values():  # a fresh attempt: old failure markers go, --force re-runs done commands
            for _, _, done, failed, _ in items(cmds, markers, logs):
                for path in (failed, done if args.force else None):
                    if path and os.path.exists(path):
                        os.unlink(path)
        submitted = submit(stages, todo, res, name, markers, logs)
    for number, job, count in submitted:
        st = stages[number - 1]
        say(f"submitted stage {number} ({st.program}): job {job}, {count} {'task' if st.job else 'step'}"
            f"{'s' * (count != 1)}")
    jobs = " ".join(j for _, j, _ in submitted)
    print(f"watch: python -m sweep {args.script} --backend slurm --list{script_args(args)}\n"
          f"cancel: scancel {jobs}\nlogs: {logs}", flush=True)
    return 0


def script_args(args):
    import shlex

    return f" -- {shlex.join(args.script_args)}" if args.script_args else ""
