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
