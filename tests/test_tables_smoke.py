"""MDC Table 3 end to end at the smoke budget (BUDGET=smoke) on tiny fake CIFAR-10 in its real on-disk format:
the table script runs every command it prints (condensations, evaluations) and the report has every row and
column of the paper's layout. It runs in a copy of the work folder of MDC Table 1 (conftest.py's
mdc_table1_smoke, run once per session; its own tests: tests/test_sweep_backends.py), so Table 3 finds Table 1's
C and MDC runs complete, as it does after Table 1 at full scale. (YOCO Table 1: tests/test_yoco_table_smoke.py,
a module of its own so that the two smokes run on two test workers.)"""
import os
import shutil

import pytest

from evaluation.tables import MISSING
from helpers import run_table

pytestmark = pytest.mark.slow  # end-to-end runs of the scripts


@pytest.fixture(scope="module")
def workdir(mdc_table1_smoke, tmp_path_factory):
    """A copy of the session's MDC Table 1 work folder (fake CIFAR-10 and Table 1's runs)."""
    table1, _ = mdc_table1_smoke
    w = tmp_path_factory.mktemp("tables") / "work"
    shutil.copytree(table1, w, symlinks=True)
    return w


def test_mdc_table3_smoke(workdir):
    """The five rows of MDC Table 3; its Baseline C and MDC rows are Table 1's runs, which Table 3 finds complete
    in Table 1's folder (the shared runs are condensed by whichever table needs them first) and evaluates."""
    out = run_table(workdir, "mdc_table3.sh", "cifar10", "2")
    for run in ("C", "MDC"):  # same settings in both tables: the --resume of Table 3's command accepts the run
        assert f"nothing to do: raid/mdc_table1/cifar10/{run} is complete" in out
    rep = workdir / "raid" / "mdc_table3" / "cifar10"
    md = (rep / "report" / "mdc3.md").read_text()
    assert "| Method | IPC-1 | IPC-2 | Avg. |" in md and md in out
    body = [line for line in md.splitlines()[4:] if line.startswith("| ")]  # the protocol line and notes follow
    rows = [line.split(" | ")[0].lstrip("| ") for line in body]
    assert rows == ["C", "random", "distance", "change", "MDC"]
    assert all(MISSING not in line for line in body)  # every cell filled
    assert "\nprotocol: ConvNet (" in md and "(n=" in body[0]  # every record has its card, every cell its n
    assert sorted(os.listdir(rep)) == ["C.json", "MDC.json", "change", "change.json", "distance", "distance.json",
                                       "random", "random.json", "report"]  # C and MDC: Table 1's runs
    shared = workdir / "raid" / "mdc_table1" / "cifar10"
    assert (shared / "C" / "data_1.pt").exists() and (shared / "MDC" / "data_1.pt").exists()
    for row, select in (("random", "random"), ("distance", "distance"), ("change", "change")):
        cfg = (rep / row / "args.yaml").read_text()
        assert f"mls_select: {select}\n" in cfg and "mls_freeze: false\n" in cfg and "adaptive_reg: true\n" in cfg
