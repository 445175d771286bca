"""Class-partitioned condensation over ``torchrun`` ranks or ``srun`` tasks (MDC Appendix B.6, reference
he-y/Multisize-Dataset-Condensation/condense_reg_mp.py; docs/algorithms.md#class-partitioned-condensation),
and the pieces of the exact mode (docs/parallel.md).

``torchrun --nproc_per_node G condense_reg_mp.py ... --nclass_sub k`` (or ``srun`` with N×G tasks, see
``launch_env``) runs the nclass/k partitions over the world: rank r condenses phases r, r+W, r+2W, … one
after the other, each exactly the single-process ``--phase p`` run (its own folder, checkpoint and
``--resume``), on ``cuda:LOCAL_RANK`` or on the CPU (gloo). With ``--global_mls True`` or ``--exact True``
the partitions step together (one partition per rank) and talk once per outer iteration through
``World.gather``.

Exact mode (``--exact True``) makes a sharded run equal the single-process ``condense_reg.py --exact
True`` run, up to float summation order:
* the network and its real-data updates draw from the global stream, seeded alike on every rank, so every
  rank trains the same network;
* everything drawn for one class (its real batches, the batch-shared DiffAug parameters of its steps, the
  numpy permutation of its decoded images, its noise initialisation) comes from the class's own stream,
  ``ClassStreams``, which does not depend on the sharding (the single-process run uses the same streams);
* the MLS window distances of all classes are gathered, so every partition makes the one global decision
  (``average_featlog`` over the gathered log in class order is bit for bit the single-process sum);
* the single image optimiser of the single-process run (MDC reference condense_reg.py, condense;
  docs/algorithms.md#the-condensation-loop: ONE SGD over the whole tensor,
  stepped once per class, so the momentum of every class moves on every other class's step) is replayed
  per shard: the steps of other ranks' classes are zero-gradient steps for this shard's rows, applied in
  replayed by ``coast`` (``--coast closed``: in closed form, cheaper and not exact).
"""
import contextlib
import datetime
import os
import random

import numpy as np
import torch

from utils.config import pack_rng, resolve_device, rng_state, set_rng_state, unpack_rng
from utils.errors import UserError


class World:
    """The ranks of this job (``launch_env``): ``enabled`` is False for a plain ``python`` run, ``launcher`` says
    who started the ranks (``torchrun``, ``srun``), ``master`` is rank 0's (address, port) under ``srun``."""

    TIMEOUT = datetime.timedelta(days=7)  # a rank waits at the final barrier while others finish long phases

    def __init__(self, rank=0, size=1, local_rank=0, enabled=False, launcher=None, master=None):
        self.rank, self.size, self.local_rank, self.enabled = rank, size, local_rank, enabled
        self.launcher, self.master = launcher, master
        self.started = False

    @classmethod
    def from_env(cls, env=None):
        env = os.environ if env is None else env
        launch = launch_env(env)
        if launch is None:
            return cls()
        master = None
        if launch["launcher"] == "srun":
            master = (launch["MASTER_ADDR"], int(launch["MASTER_PORT"]))
        return cls(int(launch["RANK"]), int(launch["WORLD_SIZE"]), int(launch["LOCAL_RANK"]), True,
                   launch["launcher"], master)

    def device(self, requested):
        """``cuda:LOCAL_RANK`` for a CUDA run (the rank's GPU on its node), else the CPU."""
        dev = resolve_device(requested)
        if dev.type != "cuda":
            return dev
        n = torch.cuda.device_count()
        if self.local_rank >= n:
            raise UserError(f"local rank {self.local_rank} has no GPU ({n} visible on this node); launch at most "
                            f"{n} processes per node (torchrun --nproc_per_node {n}; srun --ntasks-per-node {n})")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device):
        """The process group: NCCL between GPUs, gloo between CPU processes."""
        import torch.distributed as dist

        if not self.started:
            backend = "nccl" if device.type == "cuda" else "gloo"
            if self.master is None:  # torchrun: env:// (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)
                dist.init_process_group(backend, timeout=self.TIMEOUT)
            else:  # srun: rank 0 of the step listens on its host
                addr, port = self.master
                dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=self.rank,
                                        world_size=self.size, timeout=self.TIMEOUT)
            self.started = True

    def gather(self, obj):
        """Every rank's ``obj`` (picklable), in rank order."""
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        import torch.distributed as dist

        dist.barrier()

    def close(self):
        import torch.distributed as dist

        if self.started and dist.is_initialized():
            dist.destroy_process_group()
        self.started = False


# ------------------------------------------------------------------------------------------------
# launch environment: torchrun or srun

SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 10000  # MASTER_PORT under srun: 20000 + job id mod 10000


def launch_env(env):
    """The ranks' variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and
    ``launcher``) of a process started by torchrun or srun, or None for a plain ``python`` run.

    The reading taken, in order:
    * ``RANK`` and ``WORLD_SIZE`` set: torchrun (also torchrun inside srun); its variables, ``env://``.
    * else an ``srun`` step of more than one task: ``SLURM_STEP_ID`` set (a batch script's shell has
      ``SLURM_PROCID=0`` and the job's ``SLURM_NTASKS`` but no step id, so python run there is no rank) and
      ``SLURM_STEP_NUM_TASKS`` (else ``SLURM_NTASKS``) > 1: rank ``SLURM_PROCID``, local rank
      ``SLURM_LOCALID``; rank 0 is the first host of ``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``,
      ``SLURM_NODELIST``), the port 20000 + (``SLURM_JOB_ID`` mod 10000); ``MASTER_ADDR``/``MASTER_PORT``
      set in the environment win (two multi-task steps of one job at once need their own ``MASTER_PORT``).
      An ``srun`` of one task is a plain run (``--phase p``).
    * else None."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return {"launcher": "torchrun", "RANK": env["RANK"], "WORLD_SIZE": env["WORLD_SIZE"],
                "LOCAL_RANK": env.get("LOCAL_RANK", "0"), "MASTER_ADDR": env.get("MASTER_ADDR"),
                "MASTER_PORT": env.get("MASTER_PORT")}
    if "SLURM_STEP_ID" not in env or "SLURM_PROCID" not in env:
        return None
    ntasks = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
    if int(ntasks) <= 1:
        return None
    addr = env.get("MASTER_ADDR") or _first_host(env)
    port = env.get("MASTER_PORT") or str(SLURM_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % SLURM_PORT_SPAN)
    return {"launcher": "srun", "RANK": env["SLURM_PROCID"], "WORLD_SIZE": ntasks,
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"), "MASTER_ADDR": addr, "MASTER_PORT": port}


def _first_host(env):
    for key in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if env.get(key):
            try:
                return expand_hostlist(env[key])[0]
            except ValueError as e:
                raise UserError(f"{key}={env[key]!r}: {e}; set MASTER_ADDR to the host of rank 0") from None
    raise UserError("srun gave no node list (SLURM_STEP_NODELIST): set MASTER_ADDR to the host of rank 0")


def expand_hostlist(spec):
    """The host names of a Slurm host list, in order: ``node[01-03,07],gpu5`` → node01, node02, node03,
    node07, gpu5. Items are separated by commas outside brackets; a bracket holds numbers and ranges
    ``lo-hi`` (zero-padded to the width of ``lo``); an item may have several brackets (``r[1-2]n[1-2]``:
    every combination, the last bracket varying fastest). ``ValueError`` for a malformed list."""
    items, depth, cur = [], 0, ""
    for ch in spec.strip():
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            raise ValueError("a ']' without '['")
        if depth > 1:
            raise ValueError("brackets do not nest in a host list")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ValueError("an unclosed bracket")
    items.append(cur)
    hosts = []
    for item in items:
        if not item:
            raise ValueError("an empty host name")
        hosts += _expand_item(item)
    return hosts


def _expand_item(item):
    start = item.find("[")
    if start < 0:
        if "]" in item:
            raise ValueError("a ']' without '['")
        return [item]
    end = item.index("]", start)
    head, body, tails = item[:start], item[start + 1:end], _expand_item(item[end + 1:])
    out = []
    for part in body.split(","):
        lo, dash, hi = part.partition("-")
        hi = hi if dash else lo
        if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
            raise ValueError(f"[{body}] is not a list of numbers and ranges lo-hi")
        out += [f"{head}{n:0{len(lo)}d}{t}" for n in range(int(lo), int(hi) + 1) for t in tails]
    return out


def phases_of(rank, world_size, n_partitions):
    """The phases rank r condenses: r, r+W, r+2W, … (MDC Appendix B.6 partitions over the world)."""
    return list(range(rank, n_partitions, world_size))


# ------------------------------------------------------------------------------------------------
# exact mode


def stream_seed(seed, c):
    """The seed of class c's stream: numpy's SeedSequence of (seed, c), independent of the global seed's
    stream and of every other class's."""
    return int(np.random.SeedSequence([int(seed), int(c)]).generate_state(1)[0])


class ClassStreams:
    """One random stream per class (python ``random``, numpy, torch's CPU generator and the run's GPU
    generator): ``with streams.of_class(c):`` swaps class c's states in for the global ones and back, so
    code that draws from the global generators (``ClassSampler.class_sample``, ``DiffAug``,
    ``Synthesizer.sample``) draws from the class's stream without knowing it."""

    def __init__(self, seed, classes, device):
        self.device = device
        outer = rng_state(device)
        self.states = {}
        try:
            for c in classes:
                s = stream_seed(seed, c)
                random.seed(s)
                np.random.seed(s)
                torch.manual_seed(s)  # CPU and every GPU generator
                self.states[int(c)] = rng_state(device)
        finally:
            set_rng_state(outer, device)

    @contextlib.contextmanager
    def of_class(self, c):
        outer = rng_state(self.device)
        set_rng_state(self.states[c], self.device)
        try:
            yield
        finally:
            self.states[c] = rng_state(self.device)
            set_rng_state(outer, self.device)

    def state_dict(self):
        return {str(c): pack_rng(st) for c, st in self.states.items()}

    def load_state_dict(self, sd):
        missing = set(map(str, self.states)) - set(sd)
        if missing:
            raise UserError(f"the checkpoint has no random stream of class(es) {', '.join(sorted(missing))}; it was "
                            "not written by an --exact True run of these classes: start again without --resume")
        self.states = {int(c): unpack_rng(st) for c, st in sd.items() if int(c) in self.states}


def no_stream(c):
    return contextlib.nullcontext()


@torch.no_grad()
def coast(opt, steps, closed=False):
    """``steps`` steps of the image SGD with a zero gradient: the other ranks' class steps, seen from this
    shard's rows (MDC reference condense_reg.py, condense; docs/algorithms.md#the-condensation-loop).

    PyTorch's SGD (no dampening, no Nesterov, no weight decay: the image optimiser) does ``b ← μ·b + g`` and
    ``x ← x − η·b``; with g = 0 that is ``b ← μ·b``, ``x ← x − η·b``. Before the first real step there is no
    buffer and a zero step moves nothing.

    ``closed=False`` (``--coast replay``, the default): the m steps are replayed, two element-wise operations
    each, which rounds exactly as the single-process optimiser does (bit for bit on the CPU).
    ``closed=True`` (``--coast closed``): ``b ← μ^m·b``, ``x ← x − η·b·μ(1−μ^m)/(1−μ)`` in two operations
    whatever m is. It differs from the replay by float32 rounding only (about 1e-7 relative per call), but
    gradient matching amplifies such differences over iterations (docs/parallel.md gives the
    measured distance), so the replay is what makes the exact mode exact."""
    if steps <= 0:
        return
    for group in opt.param_groups:
        mu, lr = group["momentum"], group["lr"]
        if group.get("nesterov") or group.get("dampening", 0) or group.get("weight_decay", 0):
            raise ValueError("coast: the image optimiser must be plain momentum SGD")
        for p in group["params"]:
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is None or mu == 0:
                continue
            if closed:
                total = float(steps) if mu == 1 else mu * (1 - mu ** steps) / (1 - mu)
                p.add_(buf, alpha=-lr * total)
                buf.mul_(mu ** steps)
            else:
                for _ in range(steps):
                    buf.mul_(mu)
                    p.add_(buf, alpha=-lr)


__all__ = ["World", "launch_env", "expand_hostlist", "phases_of", "stream_seed", "ClassStreams", "no_stream",
           "coast"]
