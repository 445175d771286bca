"""Number- and name-affecting details checked against the reference code (issue: DREAM with random
init, chunked DREAM embedding, mp network-update batches, run-folder names, --nclass_sub)."""
import os
import types

import pytest
import torch
import torch.nn as nn

from condensation.dream import EMBED_CHUNK, dream_init, embed_all, init_picks
from condensation.loop import RealBatches, network_update
from condensation.run_files import default_save_dir
from condensation.runner import finalize_args, load_real
from condensation.synthesizer import Synthesizer
from condense_reg import get_args_parser
from data.loaders import ClassSampler
from models import create_model
from cli.arguments import parse_args
from utils.errors import UserError


def args_of(*argv, parser=get_args_parser):
    return finalize_args(parse_args(parser(), [str(a) for a in argv]))


def class_blocks(nclass=3, per=20, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (nclass * per, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(nclass).repeat_interleave(per)
    return x, y


# ---- 1. DREAM with --init random and f = 1 ------------------------------------------------------

@pytest.mark.parametrize("mode", ["first", "picks"])
def test_dream_random_init_f1(mode):
    """The reference's random branch takes the first ipc images of each class and ignores the DREAM
    picks (computed all the same, so the RNG stream is the same); ``picks`` is our explicit variant."""
    args = types.SimpleNamespace(init="random", dream_random_init=mode, net_type="convnet", dataset="cifar10",
                                 load_memory=True)
    x, y = class_blocks()
    sampler = ClassSampler(x, y, 3, 8)
    model = create_model("convnet", nclass=3, nch=3, size=8, depth=2, width=0.125, norm_type="instance")
    ipc = 2
    torch.manual_seed(1)
    init, picked = init_picks(args, model, sampler, [0, 1, 2], ipc)
    rng_after = torch.get_rng_state()
    torch.manual_seed(1)
    expect_picks = dream_init(model, sampler, [0, 1, 2], ipc)
    assert torch.equal(torch.get_rng_state(), rng_after)  # the k-means ran in both modes
    syn = Synthesizer(types.SimpleNamespace(ipc=ipc, factor=1, decode_type="single", batch_syn_max=128), 3, 3, 8,
                      "cpu", [0, 1, 2])
    syn.init(sampler, init, 0, picked)
    first = torch.cat([x[y == c][:ipc] for c in range(3)]).float() / 255
    if mode == "first":
        assert (init, picked) == ("random", None)
        assert torch.equal(syn.data.detach(), first)
    else:
        assert init == "mix" and all(torch.equal(p, e) for p, e in zip(picked, expect_picks))
        assert torch.equal(syn.data.detach(), torch.cat(expect_picks))
        assert not torch.equal(syn.data.detach(), first)


def test_dream_random_init_flag_and_folder():
    a = args_of("-d", "cifar10", "--ipc", "2", "-s", "dream", "--adaptive_reg", "True")
    assert a.dream_random_init == "first" and a.init == "random"
    assert "_picks" not in default_save_dir(a)
    b = args_of("-d", "cifar10", "--ipc", "2", "-s", "dream", "--adaptive_reg", "True", "--dream_random_init", "picks")
    assert default_save_dir(b).endswith("_random_ipc2_picks")
    with pytest.raises(SystemExit):
        args_of("--dream_random_init", "some")


# ---- 2. DREAM embedding in chunks of 256 -------------------------------------------------------

def test_dream_embedding_chunks_of_256_with_batchnorm():
    torch.manual_seed(0)
    model = create_model("convnet", nclass=3, nch=3, size=8, depth=2, width=0.125, norm_type="batch").train()
    x = torch.rand(300, 3, 8, 8)
    assert EMBED_CHUNK == 256
    got = embed_all(model, x)
    with torch.no_grad():
        want = torch.cat([model.embed(x[:256]).flatten(1), model.embed(x[256:]).flatten(1)])
        one_pass = model.embed(x).flatten(1)  # what a chunk of 512 computes
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - one_pass).abs().max() > 1e-3  # train-mode batch norm: the chunking matters


# ---- 3. network-update batches: mp drops the partial batch --------------------------------------

def update_batch_sizes(drop_last, n=1000, batch=64, n_data=1000):
    x = torch.rand(n, 1, 4, 4)
    y = torch.arange(n) % 10
    sampler = ClassSampler(x, y, 10, batch, drop_last=drop_last)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    sizes = []
    model.register_forward_pre_hook(lambda m, inp: sizes.append(inp[0].shape[0]))
    opt = torch.optim.SGD(model.parameters(), 0.01)
    args = types.SimpleNamespace(n_data=n_data, net_epoch=1, mixup_net="vanilla", mix_p=0.0, beta=1.0)
    network_update(model, opt, sampler, None, args)
    return sizes, sampler


def test_mp_network_update_drops_the_partial_batch():
    sizes, sampler = update_batch_sizes(drop_last=True)
    assert sizes == [64] * 15  # the reference mp loader: 15 x 64 of 1000, the 40 left over are dropped
    assert len(sampler._all_queue) == 1000 - 15 * 64  # the next pass starts fresh
    nxt, _ = sampler.sample()
    assert len(nxt) == 64 and len(sampler._all_queue) == 1000 - 64
    sizes, _ = update_batch_sizes(drop_last=False)
    assert sizes == [64] * 15 + [40]  # condense_reg.py: the reference keeps the partial batch
    sizes, _ = update_batch_sizes(drop_last=False, n_data=128)
    assert sizes == [64, 64]
    assert list(RealBatches(ClassSampler(torch.rand(10, 1, 2, 2), torch.arange(10), 10, 4), 2)) != []


def test_mp_runs_use_the_drop_last_sampler(fake_root):
    from condense_reg_mp import get_args_parser as mp_parser

    a = args_of("-d", "cifar10", "--data_dir", fake_root, "--ipc", "2", "--nclass_sub", "5", "--phase", "0",
                parser=mp_parser)
    assert load_real(a, torch.device("cpu"), drop_last=True).drop_last
    assert not load_real(a, torch.device("cpu")).drop_last


# ---- 4. run-folder names ------------------------------------------------------------------------

def test_folder_names_follow_the_reference():
    base = ("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10", "--adaptive_reg", "True")
    ref = "conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc10"
    name = lambda *extra: os.path.basename(default_save_dir(args_of(*base, *extra)))  # noqa: E731
    assert name() == ref
    assert name("--tag", "x") == "conv3in_x_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mix_ipc10"
    assert name("--momentum", "0.8") == "conv3in_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_mom0.8_mix_ipc10"
    assert name("--mom_img", "0.6") == ref  # the image momentum never enters the reference name
    assert name("-s", "dream") == "conv3in_dream_grad_mse_nd2000_cut_niter2000_factor2_lr0.005_b_real128_mix_ipc10"
    assert name("--tag", "x", "-s", "dream").startswith("conv3in_x_dream_grad_")
    from condense_reg_mp import get_args_parser as mp_parser

    mp = args_of(*base, "--tag", "x", "--nclass_sub", "5", "--phase", "1", parser=mp_parser)
    assert os.path.basename(default_save_dir(mp)) == "conv3in_x_" + ref[len("conv3in_"):] + "_5_phase1"
    noreg = args_of("--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "10", "--tag", "x")
    assert os.path.basename(default_save_dir(noreg)) == "conv3in_x_" + ref[len("conv3in_"):] + "_noreg"


# ---- 5. --nclass_sub ----------------------------------------------------------------------------

@pytest.mark.parametrize("k", ["3", "11"])
def test_nclass_sub_error_says_what_it_means(k):
    from condense_reg_mp import get_args_parser as mp_parser, partition

    a = args_of("-d", "cifar10", "--ipc", "2", "--nclass_sub", k, "--phase", "0", parser=mp_parser)
    with pytest.raises(UserError, match=r"number of classes each partition .* use one of 1, 2, 5, 10"):
        partition(a)


@pytest.mark.parametrize("k,text", [("0", "--nclass_sub 0 is out of range"), ("-1", "--nclass_sub is needed")])
def test_nclass_sub_below_one_is_out_of_range(k, text):
    from condense_reg_mp import get_args_parser as mp_parser

    with pytest.raises(UserError, match=rf"{text}.*: pass a value >= 1"):
        args_of("-d", "cifar10", "--ipc", "2", "--nclass_sub", k, "--phase", "0", parser=mp_parser)
