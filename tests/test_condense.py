"""Unit tests of the condensation driver (reference he-y/Multisize-Dataset-Condensation/condense_reg.py;
docs/algorithms.md#the-condensation-loop, #mls-selection-and-freezing): mix init layout, sampling, lr scaling,
folder names, freezing through a whole class update, bad inputs, divergence handling."""
import json
import os
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import condense_reg
import condensation.loop as loop
from condense import ROOT as IDC_ROOT
from condensation.matchloss import matched_params
from condensation.run_files import check_resume_args, condense_tag, default_save_dir
from condensation.runner import check_args, diffaug, finalize_args, run_condensation
from condensation.synthesizer import Synthesizer, mix_tiles, tile_sizes
from data.condensed import decode_class
from helpers import args_of
from models import create_model
from utils.config import pack_rng, rng_state, unpack_rng
from utils.errors import UserError
from utils.files import save_config


# ------------------------------------------------------------------------------------------------
# mix initialisation (MDC reference condense_reg.py, Synthesizer.init; docs/algorithms.md#initialisation)


def test_tile_sizes_remainder():
    assert tile_sizes(224, 3) == [75, 75, 74]
    assert tile_sizes(32, 2) == [16, 16]
    assert tile_sizes(8, 3) == [3, 3, 2]
    assert tile_sizes(7, 3) == [3, 2, 2]


def test_mix_tiles_layout_and_nearest():
    ipc, f, size = 2, 3, 8
    n = ipc * f * f
    const = torch.arange(n, dtype=torch.float).view(n, 1, 1, 1).expand(n, 1, size, size).clone()
    out = mix_tiles(const, ipc, f)
    hs = tile_sizes(size, f)
    starts = [0, hs[0], hs[0] + hs[1]]
    for m in range(ipc):
        for i in range(f):
            for j in range(f):
                tile = out[m, 0, starts[i]:starts[i] + hs[i], starts[j]:starts[j] + hs[j]]
                assert torch.all(tile == (i * f + j) * ipc + m)  # tile k of image m <- real k·ipc + m
    # the downsampling is F.interpolate's default (nearest) to the tile size
    g = torch.Generator().manual_seed(0)
    real = torch.rand(n, 3, size, size, generator=g)
    out = mix_tiles(real, ipc, f)
    k, m = 4, 1  # tile (1, 1): rows/cols 3..5
    want = F.interpolate(real[k * ipc + m:k * ipc + m + 1], size=(hs[1], hs[1]), mode="nearest")[0]
    assert torch.equal(out[m, :, 3:6, 3:6], want)


def test_mix_then_decode_matches_real_order():
    """Decoded index d (crop-major) of a mix-initialised class is real init image d (MDC reference condense_reg.py,
    Synthesizer.init; docs/algorithms.md#initialisation)."""
    ipc, f = 3, 2
    n = ipc * f * f
    real = torch.arange(n, dtype=torch.float).view(n, 1, 1, 1).expand(n, 3, 32, 32) / 100
    mosaics = mix_tiles(real, ipc, f)
    dec, _ = decode_class(mosaics, torch.zeros(ipc, dtype=torch.long), f)
    assert torch.allclose(dec.mean((1, 2, 3)), torch.arange(n, dtype=torch.float) / 100, atol=1e-6)


class FakeSampler:
    """class_sample(c, n, start_idx) -> constant images c + (start_idx·n + i)/1000."""

    def class_sample(self, c, n=-1, start_idx=0):
        vals = c + (start_idx * n + torch.arange(n, dtype=torch.float)) / 1000
        return vals.view(n, 1, 1, 1).expand(n, 3, 32, 32).clone(), torch.full((n,), c)


def syn_args(**kw):
    a = dict(ipc=2, factor=2, decode_type="single", batch_syn_max=128)
    a.update(kw)
    return types.SimpleNamespace(**a)


def test_synthesizer_init_start_idx_and_partition():
    syn = Synthesizer(syn_args(), nclass=10, nch=3, size=32, device="cpu", classes=[4, 7])
    assert syn.data.shape == (4, 3, 32, 32) and syn.data.requires_grad
    assert 0 <= syn.data.min() and syn.data.max() <= 1  # noisy start is clamped
    assert syn.targets.tolist() == [4, 4, 7, 7]  # real class ids, class-major
    syn.init(FakeSampler(), "mix", start_idx=1)
    dec, y, idx = syn.sample(1)
    assert idx is None and y.tolist() == [7] * 8
    # block start_idx=1 of n = ipc·f² = 8: real images 8..15 of class 7, decoded in the same order
    assert torch.allclose(dec.mean((1, 2, 3)), 7 + (8 + torch.arange(8.0)) / 1000, atol=1e-5)
    r = Synthesizer(syn_args(factor=1), nclass=10, nch=3, size=32, device="cpu")
    r.init(FakeSampler(), "random")
    assert torch.allclose(r.data[2:4].mean((1, 2, 3)), torch.tensor([1.0, 1.001]))


def test_sample_subsamples_with_numpy_permutation():
    syn = Synthesizer(syn_args(ipc=10, batch_syn_max=16), nclass=2, nch=3, size=32, device="cpu")
    np.random.seed(3)
    x, y, idx = syn.sample(0)
    np.random.seed(3)
    assert idx.tolist() == np.random.permutation(40)[:16].tolist()
    assert x.shape == (16, 3, 32, 32)
    x.sum().backward()  # gradients flow through decode + subsample into the leaf tensor
    assert syn.data.grad[:10].abs().sum() > 0 and syn.data.grad[10:].abs().sum() == 0


# ------------------------------------------------------------------------------------------------
# lr_img scaling and folders (MDC reference argument.py; mdc 12 in docs/reference-differences.md#bugs-fixed;
# docs/algorithms.md#derived-settings)

REF = "conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc10"


def test_lr_img_scaling_and_folder_names():
    mdc = args_of("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10", "--adaptive_reg", "True")
    assert mdc.lr_img == pytest.approx(5e-3) and mdc.lr_img_unscaled == 5e-3
    assert default_save_dir(mdc) == os.path.join("raid", "results", "cifar10", REF)  # MDC: reference name
    assert finalize_args(mdc).lr_img == pytest.approx(5e-3)  # scaled once only
    base_c = args_of("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10")
    assert default_save_dir(base_c) == os.path.join("raid", "results", "cifar10", REF + "_noreg")
    assert default_save_dir(base_c, root=IDC_ROOT, noreg=False) == os.path.join(
        "raid", "condensed_img", "idc", "cifar10", REF)
    ipc5 = args_of("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "5")
    assert ipc5.lr_img == pytest.approx(2.5e-3) and "_lr0.005_" in default_save_dir(ipc5)
    ipc1 = args_of("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "1", "--start_idx", "2")
    assert ipc1.lr_img == pytest.approx(5e-4)
    assert default_save_dir(ipc1).endswith("_lr0.005_mix_ipc1_idx_2")  # Baseline B: no suffix
    mp = args_of("--reproduce", "-d", "cifar100", "-f", "2", "--ipc", "10", "--adaptive_reg", "True",
                 "--nclass_sub", "20", "--phase", "1", "--tag", "x")
    assert default_save_dir(mp).endswith(mp.modeltag + condense_tag(mp, 5e-3))
    mp_c = args_of("--reproduce", "-d", "cifar100", "-f", "2", "--ipc", "10", "--nclass_sub", "20", "--phase", "1")
    assert default_save_dir(mp_c).endswith("_ipc10_noreg_20_phase1")  # idc_cat finds <base>_20_phase{i}
    dream = args_of("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10", "-s", "dream")
    assert os.path.basename(default_save_dir(dream)).startswith("conv3in_dream_grad_mse_")  # reference order
    assert default_save_dir(dream).endswith("_b_real128_mix_ipc10_noreg")


# ------------------------------------------------------------------------------------------------
# freezing through a whole class update (MDC reference reg_ipcx.py; mdc 2 in docs/reference-differences.md#bugs-fixed;
# docs/algorithms.md#freezing)


def _tile_grads(grad, ipc, f):
    """[ipc, f·f] True where the tile of a stored image received any gradient."""
    s = grad.shape[-1] // f
    out = torch.zeros(ipc, f * f, dtype=torch.bool)
    for m in range(ipc):
        for i in range(f):
            for j in range(f):
                out[m, i * f + j] = grad[m, :, i * s:(i + 1) * s, j * s:(j + 1) * s].abs().sum() > 0
    return out


@pytest.mark.parametrize("factor,frozen_x,mls", [(2, 1, 2), (1, 1, 2), (2, 2, 3)])
def test_freeze_blocks_first_decoded_images(factor, frozen_x, mls):
    torch.manual_seed(0)
    np.random.seed(0)
    ipc, f2 = 4, factor ** 2
    a = types.SimpleNamespace(dataset="cifar10", aug_type="color_crop_cutout", mixup_net="cut", match="grad")
    aug, _ = diffaug(a, torch.device("cpu"))
    model = create_model("convnet", nclass=10, width=0.125)
    syn = Synthesizer(syn_args(ipc=ipc, factor=factor), nclass=1, nch=3, size=32, device="cpu")
    before = syn.data.detach().clone()
    opt = torch.optim.SGD([syn.data], lr=1.0, momentum=0.5)
    x, y, _ = syn.sample(0)
    real = torch.rand(8, 3, 32, 32)
    loss, _ = loop.class_update(model, matched_params(model), aug, opt, real, torch.zeros(8, dtype=torch.long),
                                x, y, subsets=[mls * f2], frozen=frozen_x * f2)
    assert torch.isfinite(loss)
    has_grad = _tile_grads(syn.data.grad, ipc, factor).t().reshape(-1)  # crop-major = decoded order
    n_frozen = frozen_x * f2
    assert not has_grad[:n_frozen].any()      # the first F·f² decoded images: no gradient at all
    assert has_grad[n_frozen:].all()          # every other decoded image gets one
    changed = _tile_grads(syn.data.detach() - before, ipc, factor).t().reshape(-1)
    assert not changed[:n_frozen].any() and changed[n_frozen:].all()  # the SGD step left them untouched


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs():
    with pytest.raises(UserError, match="ipc >= 2"):
        check_args(args_of("--ipc", "1", "--adaptive_reg", "True"))
    with pytest.raises(UserError, match="lr_img"):
        check_args(args_of("--ipc", "2", "--lr_img", "nan"))
    with pytest.raises(UserError, match="--lr "):
        check_args(args_of("--ipc", "2", "--lr", "nan"))
    with pytest.raises(UserError, match="--ipc is needed"):
        check_args(args_of())
    with pytest.raises(UserError, match="condense_reg_mp"):
        check_args(args_of("--ipc", "2", "--phase", "0"))
    with pytest.raises(UserError, match="batch_syn_max"):
        check_args(args_of("--ipc", "10", "-f", "4", "--adaptive_reg", "True"))
    from condense_reg_mp import partition

    with pytest.raises(UserError, match=r"--phase 5: .* use 0\.\.4"):
        partition(args_of("--ipc", "2", "--nclass_sub", "2", "--phase", "5"))
    assert partition(args_of("--ipc", "2", "--nclass_sub", "2", "--phase", "1")) == [2, 3]


def test_unwritable_save_dir(tmp_path, fake_root):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    a = args_of("--ipc", "2", "--data_dir", fake_root, "--device", "cpu", "--save_dir", blocker / "sub")
    with pytest.raises(UserError, match="cannot write"):
        run_condensation(a)


def test_resume_args_mismatch(tmp_path):
    a = args_of("--ipc", "2", "-f", "2")
    save_config(a, str(tmp_path / "args.yaml"))
    check_resume_args(args_of("--ipc", "2", "-f", "2", "--eval_epochs", "3", "--resume"), str(tmp_path))
    with pytest.raises(UserError, match="lr_img"):
        check_resume_args(args_of("--ipc", "2", "-f", "2", "--lr_img", "0.01"), str(tmp_path))


def test_rng_pack_roundtrip():
    st = rng_state()
    a = np.random.rand(3)
    loop.set_rng_state(unpack_rng(pack_rng(st)))
    assert np.array_equal(np.random.rand(3), a)


def test_nan_loss_stops_with_checkpoint_intact(tmp_path, fake_root, monkeypatch):
    calls = {"n": 0}
    real_update = loop.class_update

    def flaky(*args, **kw):
        loss, d = real_update(*args, **kw)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 20 else loss), d  # NaN from the 2nd outer iteration

    monkeypatch.setattr(loop, "class_update", flaky)
    out = tmp_path / "run"
    a = args_of("--ipc", "2", "-f", "2", "--adaptive_reg", "True", "--adaptive_period", "1", "--data_dir",
                fake_root, "--device", "cpu", "--width", "0.125", "--niter", "1", "--inner_loop", "2",
                "--n_data", "0", "--batch_real", "4", "--eval_during", "False", "--save_dir", out)
    with pytest.raises(loop.DivergedError, match="iteration 1.*intact"):
        condense_reg.main(a)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["it"] == 1 and (out / "data_1.pt").exists() and not (out / "data_2.pt").exists()
    assert ck["opt_img"]["param_groups"][0]["lr"] == pytest.approx(5e-3 * 2 / 10)  # scaled lr_img
    assert json.loads(ck["regs"])[0]["selections"] == [[1, 1]]
