import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakedata import make_cifar, make_imagenet, make_mnist_like, make_svhn  # noqa: E402
from slurm_cluster import slurm  # noqa: E402,F401  (the one-node Slurm cluster fixture, tests/slurm_cluster.py)


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory):
    """One folder with every fake dataset in torchvision's on-disk formats."""
    root = str(tmp_path_factory.mktemp("datasets"))
    make_cifar(root, 10)
    make_cifar(root, 100, n_train=200, n_test=100)
    make_svhn(root)
    make_mnist_like(os.path.join(root, "MNIST", "raw"))
    make_mnist_like(os.path.join(root, "FashionMNIST", "raw"))
    make_imagenet(os.path.join(root, "imagenet"))
    return root


@pytest.fixture(scope="session")
def ext(tmp_path_factory):
    """A folder with the external sets of MDC Table 2 (DC, DSA, MTT: what the dry run checks for)."""
    d = tmp_path_factory.mktemp("external")
    for m in ("dc", "dsa", "mtt"):
        (d / m).mkdir()
    return d


def script_env():
    """The environment of our scripts' subprocesses: no progress bars, the project importable, one thread."""
    return dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


def run_script(script, *args, cwd=None, env=None, check=True, timeout=600):
    """Run one of our top-level scripts (``test.py``) or modules (``data.partitions``) as a subprocess (CPU, no
    progress bars)."""
    e = script_env()
    e.update(env or {})
    target = [os.path.join(ROOT, script)] if script.endswith(".py") else ["-m", script]  # or a module
    p = subprocess.run([sys.executable, *target, *map(str, args)], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def run_cli(script, *args, cwd=None, check=True):
    """Run a top-level script's command line in this process, as ``cli()`` runs it from the shell.

    The fast tier's way to test one-line errors: the real parser, checks and ``main`` without the cost of
    a new interpreter (importing torch). Returns an object with ``returncode``, ``stdout`` and ``stderr``
    like ``subprocess.run``; an exception other than the ones ``cli()`` turns into a message propagates
    (that would be a traceback on the shell). The working folder, the environment, torch's global switches
    and every RNG state are restored afterwards, so the run leaves nothing behind in the test process."""
    import contextlib
    import importlib
    import io
    import random
    import types

    import numpy as np
    import torch

    from cli.arguments import cli

    mod = importlib.import_module(script[:-3] if script.endswith(".py") else script)  # or a module: data.partitions
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = (os.getcwd(), dict(os.environ), torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, random.getstate(),
             np.random.get_state(), torch.get_rng_state())
    os.environ["TQDM_DISABLE"] = "1"
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli(mod.main, mod.get_args_parser, [str(a) for a in args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        torch.use_deterministic_algorithms(saved[2])
        torch.set_num_threads(saved[3])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[4], saved[5]
        random.setstate(saved[6])
        np.random.set_state(saved[7])
        torch.set_rng_state(saved[8])
    p = types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script} failed ({code}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# ---- the slow tier: its order, and the runs several modules share ----------------------------------------------
# The slow tier's longest modules, longest first. .ci/run's workers take whole modules in collection order
# (--dist loadfile --no-loadscope-reorder), so these start at once and the short modules fill in around them
# instead of one long module starting last and running alone. Modules not named keep their order, after these.
LONGEST_FIRST = ("test_sweep_backends.py", "test_tables_smoke.py", "test_parallel.py", "test_yoco_table_smoke.py",
                 "test_tracking.py", "test_mls_switches.py", "test_condense_smoke.py", "test_benchmarks.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's tests keep their order


def built_once(tmp_path_factory, name, build):
    """The folder ``name`` that ``build(folder)`` fills, built once per test session however many xdist workers
    ask for it: the first builds it under a file lock in the session's temporary folder (the parent of every
    worker's own), the others wait for the lock and reuse it. Its users read it and must not change it (a test
    that changes it works on a copy). A build that failed is tried again by the next worker that asks."""
    import fcntl
    import shutil

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder: pytest-N/popen-gwK is worker K's
    shared = base / "built_once"
    shared.mkdir(exist_ok=True)
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or its process ends
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def mdc_table1_smoke(tmp_path_factory):
    """MDC Table 1 (CIFAR-10, N = 2, smoke budget) run through ``python -m sweep``'s local backend on the CPU, once
    per session: (work folder, the sweep's output). The work folder has the fake CIFAR-10 of
    ``helpers.make_table_data`` in ``datasets``; users must not change it (tests/test_tables_smoke.py copies it)."""
    from helpers import make_table_data

    def build(folder):
        work = folder / "work"
        make_table_data(work / "datasets")
        p = subprocess.run([sys.executable, "-m", "sweep.local", os.path.join(ROOT, "scripts", "mdc_table1.sh"),
                            "--gpus", "cpu", "--cpu_slots", "1", "--", "cifar10", "2"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900, env=dict(script_env(), WORKDIR=str(work), DEVICE="cpu", INSTALL="0",
                                                            BUDGET="smoke"))
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        (folder / "sweep.out").write_text(p.stdout)

    folder = built_once(tmp_path_factory, "mdc_table1_smoke", build)
    return folder / "work", (folder / "sweep.out").read_text()
