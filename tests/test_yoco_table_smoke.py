"""YOCO Table 1 end to end at the smoke budget (BUDGET=smoke) on tiny fake CIFAR-10 in its real on-disk format:
the table script runs every command it prints (condensation, dynamics, scores, evaluations) and the report has
every row and column of the paper's layout."""
import os

import pytest

from helpers import make_table_data, read_csv, run_table

pytestmark = pytest.mark.slow  # end-to-end runs of the scripts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    w = tmp_path_factory.mktemp("tables")
    make_table_data(w / "datasets")
    return w


def test_yoco_table1_smoke(workdir):
    # one IPC_F→IPC_T pair: the loop over pairs is the dry-run test's (tests/test_scripts.py)
    out = run_table(workdir, "yoco_table1.sh", "cifar10", GENERATE="1", PAIRS="10:1")
    assert "no DREAM set" in out
    rows = read_csv(workdir / "raid" / "yoco_table1" / "yoco1.csv")
    methods = ["Random", "SSP", "Entropy", "AUM", "Forg.", "EL2N", "CCS", "LBPE + balanced (YOCO)"]
    assert [r["Method"] for r in rows if r["column"] == "CIFAR-10 10→1"] == methods
    assert {r["column"] for r in rows} == {"CIFAR-10 10→1"}
    assert all(r["n"] == "2" for r in rows)  # averaged over the smoke budget's two reproduce runs
    logs = workdir / "raid" / "log_reproduce_1" / "idc" / "cifar10"
    (folder,) = os.listdir(logs)
    assert os.listdir(logs / folder) == ["test_results_yoco_table1.json"]  # the table's own results file
    # the dynamics of each reproduce run were made once, with their own seed
    for k in (1, 2):
        ipc = workdir / "raid" / f"reproduce_{k}" / "dynamics_and_scores" / "idc" / "cifar10" / "ipc10"
        assert (ipc / "td-ipc10.pickle").exists()
        assert f"seed: {k}\n" in (ipc / "args.yaml").read_text()
