"""Run the commands of a reproduction script (scripts/*.sh) over the local GPUs, or submit them to Slurm.

    python -m sweep scripts/mdc_table3.sh [--backend local] [--gpus 0,1,2,3 | --gpus cpu [--cpu_slots N]]
                          [--logs DIR] [--force] [--list] [-- SCRIPT ARGS...]
    python -m sweep scripts/mdc_table1.sh --backend slurm [--profile cluster.yaml] [--partition P ...]
                          [--print] [--list] [-- SCRIPT ARGS...]          (sweep/slurm.py)

The commands are the script's job list (``DRY_RUN=jobs bash SCRIPT ARGS``, ``sweep/jobs.py``): argv, folder,
environment, kind (job or step) and stage of each, as data; nothing is parsed out of shell text.

Local backend:
* **Jobs and steps**: a job (a command with ``--device``: condensations, evaluations, dynamics, scores) gets
  one GPU (``CUDA_VISIBLE_DEVICES=<id>``; ``--gpus cpu``: ``CUDA_VISIBLE_DEVICES=""``, the script's own
  ``--device`` decides the rest). A step (``python -m evaluation.report``, ``rm``) runs serially in its
  place, ``CUDA_VISIBLE_DEVICES`` as given.
* **Stages** run in order; the jobs of a stage run in parallel, one per free GPU. After a stage with a
  failure no later stage starts.
* **Done markers**: after rc 0, ``<logs>/done/<command hash>-<environment hash>.json`` (``sweep.jobs.Markers``).
  A later sweep (local or Slurm) skips a command whose marker exists; ``--force`` re-runs everything,
  ``--list`` shows done/pending.

Logs: ``<logs>/sNN-MMM-<program>.log`` (stage NN, its command MMM), default ``raid/sweeps/<script name>/``
in the folder the script runs its commands in. Exit status: 0 all done, 1 a command failed, 2 bad input,
130 interrupted (the running jobs' process groups are terminated).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from utils.errors import UserError
from sweep.jobs import (LogsLock, Markers, job_env, job_list, list_plan, make_logs, open_log, say,
                        start_command)

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of an interrupted job's process group
POLL = 0.05


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
        bad = [g for g in ids if not re.fullmatch(r"\d+", g)]
        if bad or not ids:
            raise UserError(f"--gpus {gpus!r}: {bad[0]!r} is not a GPU id; give GPU ids (integers >= 0) separated by "
                            "commas (--gpus 0,1,2,3) or --gpus cpu" if bad and bad[0] else
                            f"--gpus {gpus!r}: give GPU ids (integers >= 0) separated by commas (--gpus 0,1,2,3) or "
                            "--gpus cpu")
        dup = sorted({g for g in ids if ids.count(g) > 1})
        if dup:
            raise UserError(f"--gpus {gpus}: GPU {', '.join(dup)} is listed twice; list each GPU once")
        present = machine_gpus(env)
        missing = [g for g in ids if present is not None and g not in present]
        if missing:
            raise UserError(f"--gpus {gpus}: GPU {missing[0]} is not on this machine (it has "
                            f"{', '.join(present) or 'none'}); pass ids from that list, or --gpus cpu")
    return [(f"GPU {g}", g) for g in ids]


def machine_gpus(env=None):
    """The GPU ids this machine has, when it can say (``nvidia-smi -L``; else an integer ``CUDA_VISIBLE_DEVICES``
    list), or None: then any integer id is accepted."""
    env = os.environ if env is None else env
    smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if smi:
        try:
            p = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
            if p.returncode == 0:
                return [str(i) for i in range(sum(line.startswith("GPU ") for line in p.stdout.splitlines()))]
        except (OSError, subprocess.TimeoutExpired):
            pass
    visible = [g.strip() for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if visible and all(re.fullmatch(r"\d+", g) for g in visible):
        return visible
    return None


# ---- running -------------------------------------------------------------------------------------------------
class Running:
    def __init__(self, cmd, proc, log, t0, slot):
        self.cmd, self.proc, self.log, self.t0, self.slot = cmd, proc, log, t0, slot


class Sweep:
    def __init__(self, stages, env, logs, markers, slots, force=False):
        self.stages, self.env, self.logs = stages, env, logs
        self.markers, self.slots, self.force = markers, slots, force
        self.running = []
        self.t0 = time.time()

    def log_path(self, cmd):
        return os.path.join(self.logs, cmd.name + ".log")

    def start(self, cmd, slot):
        label, visible = slot if slot else ("this host (step)", None)
        env = job_env(cmd, self.env)
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        try:
            log = open_log(self.log_path(cmd), cmd, label if visible is None else
                           f"{label} (CUDA_VISIBLE_DEVICES={visible!r})")
        except OSError as e:
            raise UserError(f"cannot write the log {self.log_path(cmd)} ({e.strerror}); pass another --logs") from None
        try:
            proc = start_command(cmd, env, log)
        except OSError as e:
            log.close()
            raise UserError(f"cannot start `{cmd.text}` in {cmd.cwd}: {e.strerror}") from None
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
                self.markers.write(cmd, cmd.slot)
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
    from sweep import slurm

    p = argparse.ArgumentParser(
        prog="python -m sweep",
        description="Run a reproduction script's commands (its DRY_RUN=jobs job list): stages in order, the jobs "
                    "of a stage in parallel, one per GPU (--backend local), or submit them all to Slurm at once, "
                    "one job array per stage (--backend slurm). Environment variables given to the sweep "
                    "(BUDGET=cpu, DEVICE, OUT, ...) reach the dry run and every job.",
        epilog="Script arguments that start with '-' (EXTRA flags) go after '--': "
               "python -m sweep scripts/mdc_table3.sh --gpus 0,1 -- fashion 4 --niter 3")
    p.add_argument("script", help="a reproduction script, e.g. scripts/mdc_table3.sh")
    p.add_argument("script_args", nargs="*", metavar="SCRIPT_ARGS", help="the script's own arguments (dataset, N, ...)")
    p.add_argument("--backend", choices=("local", "slurm"), default="local",
                   help="local: this machine's GPUs, until the table is done; slurm: submit the whole table to "
                        "Slurm and return (default local)")
    p.add_argument("--logs", default=None,
                   help="folder of the job logs and done markers (default raid/sweeps/<script name>/ in the folder "
                        "the script runs in)")
    p.add_argument("--force", action="store_true", help="re-run commands that finished in an earlier sweep")
    p.add_argument("--list", action="store_true",
                   help="print the stages and each command's state (done/pending; with --backend slurm: queued, "
                        "running, failed with its log), run nothing")
    g = p.add_argument_group("local backend")
    g.add_argument("--gpus", default=None,
                   help="GPU ids, comma-separated (each job gets CUDA_VISIBLE_DEVICES=<id>), or 'cpu' "
                        "(default: CUDA_VISIBLE_DEVICES if set, else every GPU of `nvidia-smi -L`)")
    g.add_argument("--cpu_slots", type=int, default=None,
                   help="with --gpus cpu: jobs run at once on the CPU, each with CUDA_VISIBLE_DEVICES='' (default 1)")
    slurm.add_arguments(p.add_argument_group("slurm backend (sweep/slurm.py; flags win over --profile)"))
    return p


def main(args):
    from sweep import slurm

    script = args.script
    if not os.path.isfile(script):
        raise UserError(f"no script {script}; pass a reproduction script such as scripts/mdc_table3.sh")
    if args.backend == "slurm":
        if args.gpus is not None or args.cpu_slots is not None:
            raise UserError("--gpus/--cpu_slots choose the local backend's slots; with --backend slurm ask for "
                            "GPUs per job with --gpus_per_job (or the profile's gpus_per_job)")
        resources = slurm.resources(args)  # bad flags or profile: an error before the dry run
    else:
        slurm.refuse_flags(args)
        resources = None
    slots = None if args.backend == "slurm" or (args.list and args.gpus is None and args.cpu_slots is None) \
        else resolve_slots(args.gpus, args.cpu_slots)
    env = dict(os.environ)
    # the dry run checks every job before anything starts (sweep/precheck.py), with each program's pre-work
    # checks when jobs are to run or be submitted
    stages, notes = job_list(os.path.abspath(script), args.script_args, env, shown=script, deep=not args.list)
    name = os.path.splitext(os.path.basename(script))[0]
    cwd = stages[0].commands[0].cwd
    logs = os.path.abspath(args.logs) if args.logs else os.path.join(cwd, "raid", "sweeps", name)
    markers = Markers(logs, env)
    if args.backend == "slurm":
        return slurm.main(args, resources, stages, notes, markers, logs, name, env)
    if args.list:
        list_plan(stages, notes, markers, logs, args.force)
        return 0
    make_logs(logs)
    n = sum(len(st.commands) for st in stages)
    say(f"sweep {script}: {n} commands in {len(stages)} stages, jobs on {', '.join(s[0] for s in slots)}, run in "
        f"{cwd}; logs in {logs}")
    with LogsLock(logs):
        return Sweep(stages, env, logs, markers, slots, args.force).run()


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
