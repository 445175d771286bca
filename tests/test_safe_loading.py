"""Loading a file never runs code: the reference pickle formats (score files, dynamics logs, CIFAR
batches) go through the restricted unpickler, our own resume state through ``weights_only=True``.
Each loader is fed a file whose ``__reduce__`` would create a marker file: the load is refused with a
one-line error and the marker never appears."""
import os
import pickle
import shutil

import pytest
import torch

from conftest import run_script
from data.condensed import save_condensed
from models import create_model
from utils.errors import UserError
from yoco.dynamics_io import DynamicsLog, load_dynamics, save_reference_pickle
from yoco.scores import load_score_file, save_score_file


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_pickle(path, marker, payload_key="LBPE_top10"):
    with open(path, "wb") as f:
        pickle.dump({payload_key: Evil(marker), "el2n": torch.rand(20)}, f)
    return path


def condensed_set(folder):
    x = torch.rand(20, 3, 32, 32)
    y = torch.arange(10).repeat_interleave(2)
    save_condensed(str(folder / "data.pt"), x, y)
    return folder


def assert_refused(p, marker, *not_written):
    assert p.returncode == 2, p.stderr[-2000:]
    err = p.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert not os.path.exists(marker)
    for path in not_written:
        assert not os.path.exists(path)
    return err


def test_released_formats_still_load(tmp_path):
    scores = {"LBPE_top10": torch.rand(20), "kmeans_2": [[1, 2], [3]], "name": "x"}
    save_score_file(str(tmp_path / "s.pickle"), scores)
    back = load_score_file(str(tmp_path / "s.pickle"))
    assert torch.equal(back["LBPE_top10"], scores["LBPE_top10"]) and back["kmeans_2"] == [[1, 2], [3]]
    log = DynamicsLog()
    log.append(0, 0, torch.arange(4), torch.randn(4, 3).log_softmax(1))
    save_reference_pickle(str(tmp_path / "td.pickle"), "cifar10", log.records)
    d = load_dynamics(str(tmp_path / "td.pickle"))
    assert d["data-name"] == "cifar10" and torch.equal(d["training_dynamics"][0]["output"], log.records[0]["output"])


def test_score_and_dynamics_loaders_refuse_code(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UserError, match=r"refused .* posix\.system|refused .* os\.system"):
        load_score_file(str(evil_pickle(tmp_path / "s.pickle", marker)))
    with pytest.raises(UserError, match="refused"):
        load_dynamics(str(evil_pickle(tmp_path / "td.pickle", marker, "training_dynamics")))
    assert not marker.exists()
    good = tmp_path / "good.pickle"
    save_score_file(str(good), {"el2n": torch.rand(100)})
    (tmp_path / "short.pickle").write_bytes(good.read_bytes()[:60])
    with pytest.raises(UserError, match="truncated or damaged"):
        load_score_file(str(tmp_path / "short.pickle"))


def test_test_py_score_file(tmp_path, fake_root):
    marker, out = tmp_path / "pwned", tmp_path / "r.json"
    p = run_script("test.py", "-d", "cifar10", "--ipc", 2, "--slct_ipc", 1, "--no_resnet", "--epochs", 1,
                   "--test_data_dir", condensed_set(tmp_path / "set"), "--data_dir", fake_root, "--device", "cpu",
                   "--score_file", evil_pickle(tmp_path / "s.pickle", marker), "--results_file", out, check=False)
    assert "refused" in assert_refused(p, marker, out)


def test_generate_importance_score_td_file(tmp_path, fake_root):
    marker = tmp_path / "pwned"
    model = create_model("convnet", nclass=10, nch=3, size=32, depth=3, norm_type="instance", dataset="cifar10")
    torch.save({"model_state_dict": model.state_dict(), "epoch": 0}, tmp_path / "ckpt.pt")
    out = tmp_path / "scores.pickle"
    p = run_script("generate_importance_score.py", "-d", "cifar10", "--ipc", 2, "--factor", 1,
                   "--custom-data-dir", condensed_set(tmp_path / "set"), "--base-dir", tmp_path, "--device", "cpu",
                   "--ckpt", tmp_path / "ckpt.pt", "--td-file", evil_pickle(tmp_path / "td.pickle", marker,
                                                                          "training_dynamics"),
                   "--custom-out-name", out, check=False)
    assert "refused" in assert_refused(p, marker, out)


def test_cifar_batches(tmp_path, fake_root):
    marker, out = tmp_path / "pwned", tmp_path / "r.json"
    root = tmp_path / "data"
    shutil.copytree(os.path.join(fake_root, "cifar-10-batches-py"), root / "cifar-10-batches-py")
    evil_pickle(root / "cifar-10-batches-py" / "data_batch_1", marker, "data")
    p = run_script("test.py", "-d", "cifar10", "-s", "random", "--ipc", 1, "--epochs", 1, "--data_dir", root,
                   "--device", "cpu", "--results_file", out, check=False)
    assert "refused" in assert_refused(p, marker, out)


def test_dynamics_resume_state(tmp_path, fake_root):
    marker = tmp_path / "pwned"
    state = tmp_path / "dyn" / "ipc2" / "resume" / "state.pt"
    state.parent.mkdir(parents=True)
    torch.save({"epoch_done": 1, "rng": Evil(marker)}, state)
    p = run_script("get_training_dynamics.py", "-d", "cifar10", "--ipc", 2, "--factor", 1, "--epochs", 2,
                   "--custom-data-dir", condensed_set(tmp_path / "set"), "--base-dir", tmp_path / "dyn",
                   "--data-dir", fake_root, "--device", "cpu", "--resume", check=False)
    assert "cannot read" in assert_refused(p, marker)
