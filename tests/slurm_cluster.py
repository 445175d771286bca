"""A real one-node Slurm cluster on this machine, for the tests of the Slurm launch (no mocks).

``start_cluster(folder)`` starts its own ``munged``, ``slurmctld`` and ``slurmd`` with everything in ``folder``
(munge key and socket, ``slurm.conf``, state, spool, logs, pid files) and returns a ``Cluster``; ``stop()``
cancels its jobs and ends the three daemons it started (by their pids), nothing else. The pytest fixture
``slurm`` (session scope; registered in tests/conftest.py) does both, and skips the
tests with the reason when Slurm cannot be installed or started.

Each cluster is independent of any other on the machine (a system Slurm, or the cluster of another xdist
worker): its own free ports, munge key and socket (clients find it through ``AuthInfo=socket=``), cluster
name and first job id (random, so two clusters' job ids, and the rendezvous ports derived from them, differ).

What works in a container without cgroups or a database: ``sbatch`` (arrays, ``--dependency``,
``--kill-on-invalid-dep``, ``--requeue``), ``srun -n N`` inside a job, ``scancel``, ``scontrol requeue`` (the
job starts again after ``cred_expire`` = 10 s, Slurm's default being 120 s), ``squeue -t all`` and
``scontrol show job`` (finished jobs stay visible ``MIN_JOB_AGE`` seconds, with ``JobState`` and
``ExitCode``). ``sacct`` does not (no ``slurmdbd``: accounting is off), nor a job completion log (Debian's
slurm-wlm has no ``jobcomp/filesystem`` plugin). Processes are tracked by ``proctrack/linuxproc`` (no
cgroups: ``task/none``, no CPU binding, no memory enforcement). The daemons run as the user starting them
(``SlurmUser``: root on CI; another user gets a cluster whose jobs run as that user). Starting takes well
under a second once installed (the first job starts about 1-3 s after ``sbatch``).
"""
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
START_TIMEOUT = 60  # seconds until the node must be idle
MIN_JOB_AGE = 600  # seconds a finished job stays visible to squeue / scontrol show job
PARTITION = "debug"


class SlurmUnavailable(RuntimeError):
    """Slurm or munge is missing and cannot be installed here (the tests skip with this reason)."""


def _exe(name):
    """The program's path (the daemons are in /usr/sbin, off a normal user's PATH), or None."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _missing():
    return [d for d in DAEMONS + ("sbatch", "srun") if not _exe(d)]


def ensure_installed():
    """Install the Debian packages ``slurm-wlm`` and ``munge`` when a daemon or client is missing (apt-get,
    with sudo when not root); ``SlurmUnavailable`` says why when that cannot be done."""
    if not _missing():
        return
    import fcntl

    with open(os.path.join(tempfile.gettempdir(), "slurm_cluster-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two xdist workers: one installs, the other waits and finds it done
        if _missing():
            _apt_install()


def _apt_install():
    if not shutil.which("apt-get"):
        raise SlurmUnavailable(f"slurm-wlm cannot be installed: no apt-get ({', '.join(_missing())} missing)")
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        raise SlurmUnavailable("slurm-wlm cannot be installed: not root and no sudo")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "slurm-wlm", "munge"]):
        p = subprocess.run(sudo + cmd, env=env, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise SlurmUnavailable(f"slurm-wlm cannot be installed: {' '.join(cmd)} failed: "
                                   f"{(p.stderr or p.stdout).strip()[-500:]}")
    if _missing():
        raise SlurmUnavailable(f"slurm-wlm cannot be installed: {', '.join(_missing())} still missing")


def free_ports(n):
    """n distinct TCP ports free on this machine now (bound once to port 0, then released)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def real_memory_mb():
    """90% of MemTotal (/proc/meminfo), in MB: below what slurmd measures, so the node is not drained."""
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        return max(1, int(kb / 1024 * 0.9))
    except (OSError, StopIteration):
        return 1024


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def slurm_conf(d, name, host, user, ctld_port, slurmd_port, cpus, memory, first_job_id):
    """The ``slurm.conf`` of a one-node cluster whose files all live in ``d``."""
    return "\n".join([
        f"ClusterName={name}",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # its own munged; a requeued job may start again after cred_expire seconds (default 120)
        f"AuthInfo=socket={d}/munge/munge.socket,cred_expire=10",
        f"StateSaveLocation={d}/state",
        f"SlurmdSpoolDir={d}/spool",
        f"SlurmctldPidFile={d}/slurmctld.pid",
        f"SlurmdPidFile={d}/slurmd.pid",
        f"SlurmctldLogFile={d}/slurmctld.log",
        f"SlurmdLogFile={d}/slurmd.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"PlugStackConfig={d}/plugstack.conf",  # not the system's /etc/slurm/plugstack.conf
        "ProctrackType=proctrack/linuxproc",  # no cgroups in a container
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",  # no slurmdbd: sacct does not work
        "MpiDefault=none",
        "SwitchType=switch/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        # test every pending job each second (the defaults: 60 s, 30 s for backfill)
        "SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=0,batch_sched_delay=0",
        "SlurmdParameters=config_overrides",  # the node is as configured below, whatever slurmd measures
        "ReturnToService=2",
        f"MinJobAge={MIN_JOB_AGE}",
        f"FirstJobId={first_job_id}",
        "KillWait=5",
        "InactiveLimit=0",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "MessageTimeout=30",
        "PropagateResourceLimits=NONE",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class Cluster:
    """A running one-node cluster: ``env`` (pass to subprocesses: ``SLURM_CONF``, the test interpreter first
    on ``PATH``, no ``SLURM_*`` of an enclosing job), ``partition``, ``conf``, ``folder``, ``cpus``,
    ``host`` (the node's name), ``run(*argv)``, ``stop()``."""

    def __init__(self, folder, conf, env, partition, cpus, host, own_folder=False):
        self.folder, self.conf, self.env, self.partition = folder, conf, env, partition
        self.cpus, self.host = cpus, host
        self.own_folder = own_folder  # a folder of its own (the one given was too long): removed by stop()
        self.pids = {}

    def run(self, *argv, check=True, timeout=120, env=None, cwd=None):
        """Run a Slurm client command (``sbatch``, ``squeue``, ...) against this cluster; ``env``: variables to
        add to ``self.env`` (``sbatch`` passes them on to the job)."""
        p = subprocess.run([str(a) for a in argv], env=dict(self.env, **(env or {})), cwd=cwd, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, argv))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def logs(self, tail=3000):
        """The daemons' logs (their tails), for failure messages."""
        out = []
        for name in ("munge/munged.log", "slurmctld.log", "slurmd.log"):
            path = os.path.join(self.folder, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-tail:]}")
        return "\n".join(out)

    def job(self, job_id):
        """``scontrol show job`` of one job as a dict (``JobState``, ``ExitCode``, ...)."""
        p = self.run("scontrol", "-o", "show", "job", job_id)
        fields = {}
        for tok in p.stdout.split():
            k, _, v = tok.partition("=")
            fields.setdefault(k, v)
        return fields

    def wait(self, job_id, timeout=300, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                                "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE")):
        """Wait until the job (every task of an array) is in one of ``states``; returns its final state(s)."""
        deadline = time.time() + timeout
        while True:
            p = self.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T", "-r")
            got = p.stdout.split()
            if got and all(s in states for s in got):
                return got[0] if len(got) == 1 else got
            if time.time() > deadline:
                raise AssertionError(f"job {job_id} still {got} after {timeout} s\n{self.logs()}")
            time.sleep(0.2)

    def idle(self):
        p = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=30)
        return p.returncode == 0 and p.stdout.split() == ["idle"]

    def stop(self):
        """Cancel this cluster's jobs, then end the daemons it started (TERM, KILL after 10 s)."""
        if self.pids.get("slurmctld"):
            self.run("scancel", "-p", self.partition, check=False, timeout=30)
            deadline = time.time() + 15
            while time.time() < deadline:
                p = self.run("squeue", "-h", "-o", "%A", check=False, timeout=30)
                if p.returncode != 0 or not p.stdout.strip():
                    break
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid:
                _terminate(pid)
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid):
    """Whether the process runs (a zombie does not: the daemons' parent is init, which may not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid, grace=10):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _read_pid(path, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            time.sleep(0.05)
    return None


def _client_env(conf):
    """os.environ for the clients and the jobs: ``SLURM_CONF``, this interpreter's folder first on ``PATH``
    (``python3`` in a job is the test's interpreter), no ``SLURM_*``/``SBATCH_*``/``SRUN_*`` variables of an
    enclosing job (the tests may themselves run under Slurm)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
    env["SLURM_CONF"] = conf
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", ""), "/usr/sbin", "/sbin"])
    return env


def start_cluster(folder):
    """Start munged, slurmctld and slurmd with their files in ``folder`` and wait until the node is idle;
    ``SlurmUnavailable`` when Slurm is missing and cannot be installed, ``RuntimeError`` (with the daemons'
    logs) when it does not come up in ``START_TIMEOUT`` seconds."""
    ensure_installed()
    folder, own = os.path.abspath(str(folder)), False
    if len(folder) > 60:  # unix socket paths are limited to 107 bytes (munge, slurmd's step sockets)
        folder, own = tempfile.mkdtemp(prefix="slurm-"), True
    os.makedirs(folder, exist_ok=True)
    for sub in ("munge", "state", "spool"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    os.chmod(os.path.join(folder, "munge"), 0o700)
    host = socket.gethostname().split(".")[0]
    user = "root" if os.geteuid() == 0 else _username()
    ctld_port, slurmd_port = free_ports(2)
    conf = os.path.join(folder, "slurm.conf")
    with open(os.path.join(folder, "plugstack.conf"), "w"):
        pass
    with open(conf, "w") as f:
        f.write(slurm_conf(folder, f"t{secrets.token_hex(4)}", host, user, ctld_port, slurmd_port, cpu_count(),
                           real_memory_mb(), random.randint(1000, 900000)))
    cluster = Cluster(folder, conf, _client_env(conf), PARTITION, cpu_count(), host, own)
    try:
        _start_munge(cluster)
        _start(cluster, "slurmctld", [_exe("slurmctld"), "-f", conf, "-i"], "slurmctld.pid")
        _start(cluster, "slurmd", [_exe("slurmd"), "-f", conf, "-N", host], "slurmd.pid")
        deadline = time.time() + START_TIMEOUT
        while not cluster.idle():
            if time.time() > deadline:
                raise RuntimeError(f"the test Slurm cluster did not come up in {START_TIMEOUT} s: "
                                   f"sinfo says {cluster.run('sinfo', '-N', check=False).stdout!r}\n{cluster.logs()}")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _username():
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _start_munge(cluster):
    """munged with a fresh key of its own, its socket in ``folder/munge`` (``--force``: the test folders are
    not world-executable, which munged otherwise refuses for a socket)."""
    d = os.path.join(cluster.folder, "munge")
    key = os.path.join(d, "munge.key")
    if not os.path.exists(key):
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
    _start(cluster, "munged", [_exe("munged"), "--force", f"--key-file={key}", f"--socket={d}/munge.socket",
                               f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                               f"--seed-file={d}/munged.seed"], "munge/munged.pid")


def _start(cluster, name, argv, pid_file):
    """Start a daemon (it forks into the background) and record its pid from its pid file."""
    pid_path = os.path.join(cluster.folder, pid_file)
    if os.path.exists(pid_path):
        os.remove(pid_path)
    p = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{name} did not start ({p.returncode}): {p.stderr.strip()}\n{cluster.logs()}")
    pid = _read_pid(pid_path)
    if pid is None:
        raise RuntimeError(f"{name} wrote no pid file {pid_path}\n{cluster.logs()}")
    cluster.pids[name] = pid


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running test cluster (``Cluster``) for the session; the tests skip, saying why, where Slurm cannot be
    installed or started."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as e:
        print(f"skipped: {e}")
        pytest.skip(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()
