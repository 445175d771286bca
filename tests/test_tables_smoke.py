"""MDC Table 3 end to end at the smoke budget (BUDGET=smoke) on tiny fake CIFAR-10 in its real on-disk format:
the table script runs every command it prints (condensations, evaluations) and the report has every row and
column of the paper's layout. (MDC Table 1 runs through sweep.local's two backends:
tests/test_sweep_backends.py; YOCO Table 1: tests/test_yoco_table_smoke.py, a module of its own so that the two
smokes run on two test workers.)"""
import csv
import os
import subprocess

import pytest

from conftest import ROOT
from evaluation.tables import MISSING
from fakedata import make_cifar

pytestmark = pytest.mark.slow  # end-to-end runs of the scripts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory)


def make_workdir(tmp_path_factory):
    w = tmp_path_factory.mktemp("tables")
    make_cifar(str(w / "datasets"), 10, n_train=500, n_test=50)  # 50 images per class: IPC_F 10 at f = 2
    return w


def run_table(workdir, script, *args, **env):
    e = dict(os.environ, WORKDIR=str(workdir), BUDGET="smoke", DEVICE="cpu", INSTALL="0", TQDM_DISABLE="1",
             OMP_NUM_THREADS="1", **env)
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], env=e, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_mdc_table3_smoke(workdir):
    """The five rows of MDC Table 3; its Baseline C and MDC rows are Table 1's runs (condensed here, in Table 1's
    folder, as Table 1 would: the shared runs are condensed by whichever table needs them first)."""
    out = run_table(workdir, "mdc_table3.sh", "cifar10", "2")
    rep = workdir / "raid" / "mdc_table3" / "cifar10"
    md = (rep / "report" / "mdc3.md").read_text()
    assert "| Method | IPC-1 | IPC-2 | Avg. |" in md and md in out
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines()[4:]]
    assert rows == ["C", "random", "distance", "change", "MDC"]
    assert all(MISSING not in line for line in md.splitlines()[4:])  # every cell filled
    assert sorted(os.listdir(rep)) == ["C.json", "MDC.json", "change", "change.json", "distance", "distance.json",
                                       "random", "random.json", "report"]  # C and MDC: Table 1's runs
    shared = workdir / "raid" / "mdc_table1" / "cifar10"
    assert (shared / "C" / "data_1.pt").exists() and (shared / "MDC" / "data_1.pt").exists()
    for row, select in (("random", "random"), ("distance", "distance"), ("change", "change")):
        cfg = (rep / row / "args.yaml").read_text()
        assert f"mls_select: {select}\n" in cfg and "mls_freeze: false\n" in cfg and "adaptive_reg: true\n" in cfg
