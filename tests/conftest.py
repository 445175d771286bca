import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakedata import make_cifar, make_imagenet, make_mnist_like, make_svhn  # noqa: E402


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
    """Run one of our top-level scripts as a subprocess (CPU, no progress bars)."""
    e = script_env()
    e.update(env or {})
    p = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p
