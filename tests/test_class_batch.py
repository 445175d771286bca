"""The class-batched inner step (``--class_batch True``, condensation/batched.py) against the sequential loop,
and ``--precision`` (training/precision.py)."""
import copy
import json
import os

import numpy as np
import pytest
import torch

from conftest import run_cli, run_script
from fakedata import make_cifar
from helpers import args_of

from condensation.batched import check_class_batch, class_batched_losses, step_positions
from condensation.loop import Condenser
from condensation.matchloss import grad_match_loss, matched_params
from condensation.runner import diffaug, load_real, make_model_fn
from models import create_model
from utils.config import rng_state, set_rng_state, set_seed
from utils.errors import UserError
from training.precision import autocast, check_precision


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("cifar_cb"))
    make_cifar(r, 10, n_train=300, n_test=100)
    return r


FLAGS = ("--device", "cpu", "--width", "0.125", "--niter", "1", "--inner_loop", "5", "--n_data", "16", "--batch_real",
         "8", "--ipc", "4", "-f", "2", "--adaptive_reg", "True", "--eval_during", "False", "--deterministic", "True")


def test_step_positions_are_the_sequential_positions_bit_for_bit():
    torch.manual_seed(0)
    blocks = [slice(0, 4), slice(4, 8), slice(8, 12)]
    data = torch.randn(12, 3, 5, 5, requires_grad=True)
    opt = torch.optim.SGD([data], lr=0.3, momentum=0.5)
    assert torch.equal(step_positions(opt, data, blocks), data.detach())  # no momentum buffer yet: nothing moves
    for _ in range(2):  # two inner steps of the sequential loop
        X = step_positions(opt, data, blocks)
        for rows in blocks:
            assert torch.equal(X[rows], data.detach()[rows])
            g = torch.zeros_like(data)
            g[rows] = torch.randn_like(g[rows])
            data.grad = g
            opt.step()
    with pytest.raises(ValueError, match="plain momentum SGD"):
        step_positions(torch.optim.SGD([data], lr=0.1, momentum=0.5, nesterov=True), data, blocks)


def classes_batch(dtype, C=3, n_real=6, n_syn=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(C, n_real, 3, 32, 32, generator=g, dtype=dtype)
    syn = torch.randn(C, n_syn, 3, 32, 32, generator=g, dtype=dtype)
    y_real = torch.arange(C)[:, None].expand(C, n_real)
    y_syn = torch.arange(C)[:, None].expand(C, n_syn)
    return real, y_real, syn, y_syn


def per_class_gradients(model, real, y_real, syn, y_syn, metric, subsets, frozen, batched):
    """Losses [C] and d loss / d syn of the batched pass or of C sequential ``grad_match_loss`` calls."""
    params = matched_params(model)
    s = syn.clone().requires_grad_(True)
    if batched:
        losses = class_batched_losses(model, params, real, y_real, s, y_syn, metric, subsets, frozen)
    else:
        losses = torch.stack([grad_match_loss(model, real[c], y_real[c], s[c], y_syn[c], params, metric,
                                              subsets=subsets, syn_frozen=frozen or None) for c in range(len(s))])
    g, = torch.autograd.grad(losses.sum(), s)
    return losses.detach(), g


@pytest.mark.parametrize("metric,subsets,frozen", [("mse", (), 0), ("mse", (2, 4), 2), ("l1", (4,), 0),
                                                   ("cos", (2,), 2), ("l1_mean", (6,), 0)])
def test_batched_losses_equal_the_sequential_ones_in_float64(metric, subsets, frozen):
    """Same losses and image gradients as the per-class path (split subsets and frozen prefix included), to
    float64 rounding: the batched pass computes the same function."""
    torch.manual_seed(1)
    model = create_model("convnet", nclass=3, depth=2, width=0.25, norm_type="instance").double().train()
    batch = classes_batch(torch.float64)
    l_seq, g_seq = per_class_gradients(model, *batch, metric, subsets, frozen, batched=False)
    l_bat, g_bat = per_class_gradients(model, *batch, metric, subsets, frozen, batched=True)
    torch.testing.assert_close(l_bat, l_seq, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_bat, g_seq, rtol=1e-9, atol=1e-12 * g_seq.abs().max().item())
    if frozen:
        assert torch.all(g_bat[:, :frozen] == 0)  # the frozen decoded images get no gradient


def test_batched_float32_is_as_close_to_float64_as_the_sequential_path():
    """In float32 the two paths differ by rounding only: the batched image gradients are no farther from the
    float64 result than the sequential loop's (gradient matching is ill-conditioned: both are ~1e-3 off)."""
    torch.manual_seed(2)
    m32 = create_model("convnet", nclass=4, depth=3, width=0.5, norm_type="instance").train()
    m64 = copy.deepcopy(m32).double()
    b32 = classes_batch(torch.float32, C=4, n_real=8, n_syn=16, seed=3)
    b64 = [t.double() if t.is_floating_point() else t for t in b32]
    _, g64 = per_class_gradients(m64, *b64, "mse", (4, 8), 4, batched=False)
    err = {}
    for batched in (False, True):
        _, g = per_class_gradients(m32, *b32, "mse", (4, 8), 4, batched=batched)
        err[batched] = (g.double() - g64).abs().max().item() / g64.abs().max().item()
    assert err[True] <= 4 * err[False] + 1e-6, err


def condenser(root, out, *flags):
    args = args_of("-d", "cifar10", "--data_dir", root, *FLAGS, "--save_dir", out, *flags)
    set_seed(0)
    dev = torch.device("cpu")
    cond = Condenser(args, dev, str(out), load_real=load_real, diffaug=diffaug, model_fn=make_model_fn(args, dev))
    cond.fresh_net()
    return cond


def test_batched_inner_step_equals_the_sequential_inner_step(root, tmp_path, monkeypatch):
    """From one state (momentum, subsets and freezing, a window step with measurements): the same losses and
    measures and images up to float32 rounding, and the random streams left in the same state (the draws
    are made in the sequential order). Two groups of 5 classes, in passes of at most 3 classes."""
    monkeypatch.setattr("condensation.loop.CLASS_CHUNK", 3)
    cond = condenser(root, tmp_path / "run", "--class_batch", "True")
    cond.inner_step(0, False, None, [[] for _ in cond.classes])  # a momentum buffer for the positions to use
    cond.class_terms = lambda t, r, window: ([4, 8], 4 if r % 2 else 0, window)  # mixed groups of classes
    dev = cond.device
    start = (rng_state(dev), copy.deepcopy(cond.sampler.state_dict()), cond.synset.data.detach().clone(),
             copy.deepcopy(cond.opt_img.state_dict()), np.random.get_state())
    out = {}
    for name, step in (("sequential", cond.inner_step), ("batched", cond.batched_inner_step)):
        set_rng_state(start[0], dev)
        cond.sampler.load_state_dict(copy.deepcopy(start[1]))
        with torch.no_grad():
            cond.synset.data.copy_(start[2])
        cond.opt_img.load_state_dict(copy.deepcopy(start[3]))
        np.random.set_state(start[4])
        featlog = [[] for _ in cond.classes]
        losses = step(1, True, None, featlog)
        out[name] = (torch.stack(losses), featlog, cond.synset.data.detach().clone(),
                     cond.opt_img.state[cond.synset.data]["momentum_buffer"].clone(), rng_state(dev),
                     cond.sampler.state_dict(), np.random.get_state()[1].copy())
    s, b = out["sequential"], out["batched"]
    torch.testing.assert_close(b[0], s[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(b[1]), np.array(s[1]), rtol=1e-5)
    moved = (s[2] - start[2]).abs().max().item()
    assert moved > 0 and (b[2] - s[2]).abs().max().item() <= 1e-3 * moved
    torch.testing.assert_close(b[3], s[3], rtol=1e-4, atol=1e-4 * s[3].abs().max().item())
    assert torch.equal(b[4]["torch"], s[4]["torch"]) and np.array_equal(b[6], s[6])  # the same draws were made
    assert repr(b[5]) == repr(s[5])


def condense(root, out, *flags, check=True):
    return run_script("condense_reg.py", "-d", "cifar10", "--data_dir", root, *FLAGS, "--save_dir", out, *flags,
                      check=check)


def mls_trajectory(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [(r["it"], r["mls"]) for r in map(json.loads, f) if r["type"] == "mls"]


@pytest.mark.slow
def test_class_batch_run_follows_the_sequential_run(root, tmp_path):
    """condense_reg.py --class_batch True, MDC with the MLS moving (period 1): the same MLS choices as the
    sequential run and images equal up to the float rounding that the matching amplifies."""
    flags = ("--adaptive_period", "1", "--stop_after", "3")
    condense(root, tmp_path / "seq", *flags)
    condense(root, tmp_path / "cb", *flags, "--class_batch", "True")
    assert mls_trajectory(tmp_path / "cb") == mls_trajectory(tmp_path / "seq")
    assert len({m for _, m in mls_trajectory(tmp_path / "seq")}) > 1  # the MLS moved: subsets and freezing ran
    a = torch.load(tmp_path / "seq" / "data_3.pt", weights_only=True)[0]
    b = torch.load(tmp_path / "cb" / "data_3.pt", weights_only=True)[0]
    assert not torch.equal(a, b) and (a - b).abs().max().item() < 1e-2
    assert "class_batch: true" in (tmp_path / "cb" / "args.yaml").read_text()


def test_class_batch_refuses_what_it_cannot_batch(root, tmp_path):
    for flags, text in ((("--norm_type", "batch"), "BatchNorm"), (("--exact", "True"), "--exact"),
                        (("--match", "feat", "--adaptive_reg", "False"), "--match grad")):
        p = run_cli("condense_reg.py", "-d", "cifar10", "--data_dir", root, *FLAGS, "--save_dir", tmp_path / "bad",
                    "--class_batch", "True", *flags, check=False)
        assert p.returncode == 2 and text in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert not (tmp_path / "bad").exists()
    model = create_model("convnet", nclass=3, depth=2, width=0.25, norm_type="instance")
    check_class_batch(args_of("-d", "cifar10", "--ipc", "2", "--class_batch", "True"), model)


def test_precision_checks_and_autocast():
    with pytest.raises(UserError, match="needs a CUDA device"):
        check_precision("tf32", "cpu")
    with pytest.raises(UserError, match="unknown --precision"):
        check_precision("fp16", "cpu")
    check_precision("bf16", "cpu")
    model = create_model("convnet", nclass=3, depth=2, width=0.25, norm_type="instance")
    x = torch.rand(2, 3, 32, 32)
    with autocast("bf16", "cpu"):
        assert model(x).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert model(x).dtype == torch.float32


@pytest.mark.slow
def test_bf16_condensation_and_evaluation_run(root, tmp_path):
    """--precision bf16 through condense_reg.py (folder marker, args.yaml) and test.py (the record says it);
    tf32 on the CPU is a one-line error."""
    run_script("condense_reg.py", "-d", "cifar10", "--data_dir", root, *FLAGS, "--stop_after", "1",
               "--precision", "bf16", cwd=tmp_path)
    (folder,) = list((tmp_path / "raid" / "results" / "cifar10").iterdir())
    assert folder.name.endswith("_bf16") or "_bf16_" in folder.name
    assert "precision: bf16" in (folder / "args.yaml").read_text()
    res = tmp_path / "res.json"
    run_script("test.py", "-d", "cifar10", "--data_dir", root, "--device", "cpu", "--test_data_dir",
               str(folder / "data_1.pt"), "--ipc", "4", "-f", "2", "--width", "0.125", "--epochs", "2", "--repeat",
               "1", "--precision", "bf16", "--results_file", res)
    with open(res) as f:
        rec = json.load(f)[-1]
    assert rec["args"]["precision"] == "bf16"
    p = condense(root, tmp_path / "tf32", "--precision", "tf32", check=False)
    assert p.returncode == 2 and "needs a CUDA device" in p.stderr and not (tmp_path / "tf32").exists()
