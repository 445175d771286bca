"""MDC ablation switches through condense_reg.py (MDC Tables 3 and 5): ``--mls_select``, ``--mls_freeze``,
``--mls_metric`` on fake CIFAR-10 (subprocess runs, tiny budgets), plus the measures themselves."""
import json
import os

import numpy as np
import pytest
import torch

from conftest import run_script
from fakedata import make_cifar


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("cifar_mls"))
    make_cifar(r, 10, n_train=300, n_test=100)
    return r


def condense(root, out, *flags, check=True):
    return run_script("condense_reg.py", "-d", "cifar10", "--data_dir", root, "--device", "cpu", "--width", "0.125",
                      "--niter", "1", "--inner_loop", "5", "--n_data", "16", "--batch_real", "8", "--ipc", "4",
                      "-f", "2", "--adaptive_reg", "True", "--eval_during", "False", "--deterministic", "True",
                      "--save_dir", out, *flags, check=check)


def records(folder, kind):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]


@pytest.mark.slow
def test_the_measure_does_not_change_the_run(root, tmp_path):
    """Only the first window (MLS 1 whatever the measure) before the stop: the three measures must give
    bit-identical images, i.e. measuring touches neither the RNG, the network nor the images."""
    data = {}
    for metric in ("feature", "gradient", "accuracy"):
        out = tmp_path / metric
        condense(root, out, "--mls_metric", metric, "--adaptive_period", "100", "--stop_after", "3")
        (rec,) = records(out, "mls")
        assert rec["it"] == 1 and rec["mls"] == 1 and len(rec["dbar"]) == 3
        data[metric] = torch.load(out / "data_3.pt", weights_only=True)[0]
        if metric == "accuracy":
            assert all(0 <= v <= 100 for v in rec["dbar"])
        else:
            assert all(v > 0 for v in rec["dbar"])
    assert torch.equal(data["feature"], data["gradient"]) and torch.equal(data["feature"], data["accuracy"])
    assert (tmp_path / "gradient").exists() and "mls_metric: gradient" in (tmp_path / "gradient" / "args.yaml").read_text()


@pytest.mark.slow
def test_select_rules_in_the_loop(root, tmp_path):
    for select, freeze in (("change", "True"), ("distance", "False"), ("random", "False")):
        out = tmp_path / f"{select}_{freeze}"
        condense(root, out, "--mls_select", select, "--mls_freeze", freeze, "--adaptive_period", "1",
                 "--stop_after", "4")
        recs = records(out, "mls")
        assert [r["it"] for r in recs] == [1, 2, 3, 4]
        for r in recs:
            if select == "distance":
                assert r["mls"] == 1 + int(np.argmax(np.float32(r["dbar"])))
            elif select == "random":
                assert r["dbar"] == [] and r["delta"] is None and 1 <= r["mls"] <= 3
            elif r["it"] > 1:
                assert r["mls"] == 1 + int(np.argmax(np.float32(r["delta"])))
        frozen = [r["frozen"] for r in records(out, "loss")]
        if freeze == "False":
            assert set(frozen) == {-1}
    p = condense(root, tmp_path / "bad", "--mls_select", "random", "--adaptive_reg", "False", check=False)
    assert p.returncode == 2 and "--adaptive_reg True" in p.stderr and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_default_folder_names_the_switches(root, tmp_path):
    run_script("condense_reg.py", "-d", "cifar10", "--data_dir", root, "--device", "cpu", "--width", "0.125",
               "--niter", "1", "--inner_loop", "5", "--n_data", "16", "--batch_real", "8", "--ipc", "2", "-f", "2",
               "--adaptive_reg", "True", "--eval_during", "False", "--mls_select", "distance", "--mls_freeze",
               "False", "--mls_metric", "gradient", "--stop_after", "1", cwd=tmp_path)
    (folder,) = list((tmp_path / "raid" / "results" / "cifar10").iterdir())
    assert "_mlsdistance_nofreeze_mlsgradient_" in folder.name


def test_prefix_accuracy_is_nearest_class_mean():
    """The accuracy measure on a hand-built case: 2 classes, an identity embedding."""
    from condensation.mls.measures import PrefixAccuracy
    from condensation.synthesizer import Synthesizer
    from data.loaders import ClassSampler
    from types import SimpleNamespace

    class Embed(torch.nn.Module):
        def embed(self, x):
            return x.flatten(1)

    # real: class 0 near 0, class 1 near 1 (one pixel, one channel)
    real = torch.tensor([0.0, 0.1, 0.9, 1.0, 0.45, 0.55]).view(6, 1, 1, 1)
    targets = torch.tensor([0, 0, 1, 1, 0, 1])
    sampler = ClassSampler(real, targets, 2, 3)
    args = SimpleNamespace(factor=1, decode_type="single", batch_syn_max=128, ipc=3)
    syn = Synthesizer(args, 2, 1, 1, "cpu")
    # class 0 prefix: 0.6 (IPC-1: wrong side), then 0.0, 0.0; class 1: 1.0, 1.0, 1.0
    syn.data.data = torch.tensor([0.6, 0.0, 0.0, 1.0, 1.0, 1.0]).view(6, 1, 1, 1)
    acc = PrefixAccuracy(sampler, [0, 1], 3, torch.nn.Identity(), seed=0)

    def expected(syn_values):
        """numpy nearest class mean: per class, % of its real values nearest its prefix mean (first min)."""
        r, t = real.flatten().numpy(), targets.numpy()
        blocks = np.float32(syn_values).reshape(2, 3)
        out = [[0.0] * 2 for _ in range(2)]
        for x in (1, 2):
            cent = blocks[:, :x].mean(1)
            pred = np.argmin(np.abs(r[:, None] - cent[None, :]), 1)
            for c in range(2):
                out[c][x - 1] = 100.0 * float(np.mean(pred[t == c] == c))
        return out

    for values in ([0.6, 0.0, 0.0, 1.0, 1.0, 1.0], [0.9, 0.0, 0.0, 1.0, 1.0, 1.0]):
        syn.data.data = torch.tensor(values).view(6, 1, 1, 1)
        got = acc(Embed(), syn, 3)
        assert np.allclose(got, expected(values))
    # the second case by hand: IPC-1 centroids 0.9 / 1.0; class 1's reals 0.9 (a tie at distance 0 vs
    # 0.01? no: nearer class 0), 1.0 (right), 0.55 (class 0): one of three right
    assert got[1][0] == pytest.approx(100 / 3) and got[0] == [100.0, 100.0]
