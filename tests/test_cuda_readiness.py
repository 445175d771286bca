"""CUDA paths checked on a CPU machine, with PyTorch's ``meta`` device standing in for a GPU: a tensor
left on the wrong device fails here as it would on CUDA, and every read of a device value by the host
(``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``) or host-to-device copy is counted, because each is
a point where a CUDA run waits for the GPU.

* resume: a checkpoint written by a CPU run resumes on the stand-in device (condensation and YOCO
  dynamics), RNG states stay on the CPU, the sampler's queues, images, network and optimiser move over;
* host waits: one condensation inner step outside MLS windows costs at most 2 of them (10 classes);
* strict ``--deterministic True``: the deterministic stand-ins equal the originals, the one-line error;
* k-means runs on the CPU whatever the device of its input.
"""
import collections
import functools
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import condense_reg
from condensation import loop, runner
from data.loaders import ClassSampler
from cli.arguments import cli, parse_args
from utils.config import rng_state, set_rng_state
from training.determinism import bilinear_resize, global_avg_pool, grid_sample_bilinear

META = torch.device("meta")


class HostWaits:
    """Counts (and answers with dummies) what would make the host wait for a non-CPU device."""

    READS = {"item": lambda t: 1.0, "__bool__": lambda t: True, "__float__": lambda t: 1.0, "__int__": lambda t: 1,
             "tolist": lambda t: [1.0] * t.numel() if t.dim() else 1.0,
             "cpu": lambda t: torch.zeros(t.shape, dtype=t.dtype)}

    def __init__(self, monkeypatch):
        self.counts = collections.Counter()
        for name, dummy in self.READS.items():
            monkeypatch.setattr(torch.Tensor, name, self._read(name, getattr(torch.Tensor, name), dummy))
        to, tensor = torch.Tensor.to, torch.tensor

        def counted_to(t, *a, **k):
            out = to(t, *a, **k)
            if t.device.type == "cpu" and out.device.type != "cpu":
                self.counts["host-to-device copy"] += 1
            return out

        def counted_tensor(data, *a, **k):
            out = tensor(data, *a, **k)
            if out.device.type != "cpu":
                self.counts["host-to-device copy"] += 1
            return out
        monkeypatch.setattr(torch.Tensor, "to", counted_to)
        monkeypatch.setattr(torch, "tensor", counted_tensor)

    def _read(self, name, orig, dummy):
        def read(t, *a, **k):
            if t.device.type == "cpu":
                return orig(t, *a, **k)
            self.counts[name] += 1
            return dummy(t)
        return read

    def total(self):
        return sum(self.counts.values())


@pytest.fixture(scope="module")
def big_root(tmp_path_factory):
    from fakedata import make_cifar
    return make_cifar(str(tmp_path_factory.mktemp("data")), 10, n_train=2000, n_test=50)  # 200 per class


def cond_args(root, *extra):
    a = parse_args(condense_reg.get_args_parser(), [
        "--reproduce", "-d", "cifar10", "-f", "2", "--ipc", "2", "--data_dir", root, "--niter", "1",
        "--inner_loop", "10", "--n_data", "64", "--batch_real", "8", "--eval_during", "False", "--adaptive_reg",
        "True", "--adaptive_period", "100", "--width", "0.125", "--device", "cpu", *extra])
    runner.check_args(a)
    runner.finalize_args(a)
    return a


def condenser(args, device, save_dir, monkeypatch):
    monkeypatch.setattr(loop, "save_grid", lambda *a, **k: None)  # a PNG needs the values
    return loop.Condenser(args, device, str(save_dir), load_real=functools.partial(runner.load_real, drop_last=False),
                          diffaug=runner.diffaug, model_fn=runner.make_model_fn(args, device))


@pytest.mark.slow
def test_inner_step_waits_for_the_host_at_most_twice(big_root, tmp_path, monkeypatch):
    args = cond_args(big_root, "--inner_loop", "3")
    cond = condenser(args, META, tmp_path / "run", monkeypatch)
    waits = HostWaits(monkeypatch)
    cond.fresh_net()
    cond.outer_iteration(1, window=False)  # fills the class queues (one permutation copy per class epoch)
    waits.counts.clear()
    cond.outer_iteration(2, window=False)
    per_step = waits.total() / args.inner_loop
    assert per_step <= 2, dict(waits.counts)  # 10 classes: the old loop waited ~20 times per step
    assert waits.counts["__bool__"] == args.inner_loop  # the finiteness of each network update, read once


@pytest.mark.slow
def test_tracking_adds_no_host_wait_to_the_loop(big_root, tmp_path, monkeypatch):
    """Two outer iterations of ``run()`` (records, MLS windows; save points left out) wait for the device as often
    with a tracker (TensorBoard, the real one) as without: the tracked values are the ones the loop reads anyway."""
    waits = {}
    for kind in ("none", "tensorboard"):
        args = cond_args(big_root, "--tracker", kind, "--stop_after", "2", "--inner_loop", "2")
        monkeypatch.setattr(loop, "grid_png", lambda *a, **k: b"")  # images need values; not in the loop
        cond = condenser(args, META, tmp_path / kind, monkeypatch)
        monkeypatch.setattr(cond, "save_point", lambda it: None)
        counter = HostWaits(monkeypatch)
        try:
            cond.run()
        finally:
            monkeypatch.undo()
            cond.release()
        waits[kind] = dict(counter.counts)
    assert waits["tensorboard"] == waits["none"] and waits["none"], waits
    assert any((tmp_path / "tensorboard" / "tensorboard").iterdir())  # it did track


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta holds no values
def test_checkpoint_of_a_cpu_run_resumes_on_another_device(big_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cpu = condenser(cond_args(big_root, "--stop_after", "1", "--inner_loop", "3"), torch.device("cpu"), run,
                    monkeypatch)
    cpu.run()  # one outer iteration, then a checkpoint
    args = cond_args(big_root, "--resume", "--inner_loop", "3")
    HostWaits(monkeypatch)  # the resumed run's reads of device values get dummies (meta has no values)
    cond = condenser(args, META, run, monkeypatch)
    assert cond.start_it == 1
    assert cond.synset.data.device == META and next(cond.model.parameters()).device == META
    assert all(s["momentum_buffer"].device == META for s in cond.opt_img.state.values())
    assert all(q.device == META for q in cond.sampler._cls_queue) and cond.sampler._all_queue.device == META
    cond.outer_iteration(1, window=False)  # every tensor it touches is on the device, or this raises
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "cuda" not in ck["rng"] and ck["rng"]["torch"].device.type == "cpu"


def test_sampler_state_is_saved_on_the_cpu_and_loaded_onto_the_device():
    x, y = torch.zeros(40, 3, 4, 4, dtype=torch.uint8), torch.arange(40) % 4
    cpu = ClassSampler(x, y, 4, 3)
    cpu.class_sample(1)
    cpu.sample()
    st = cpu.state_dict()
    meta = ClassSampler(x, y, 4, 3, device=META)
    meta.load_state_dict(st)
    assert all(q.device == META for q in meta._cls_queue) and meta._all_queue.device == META
    xb, yb = meta.class_sample(1)
    assert xb.device == META and yb.device == META and xb.shape == (3, 3, 4, 4)


def test_rng_state_of_the_run_device_only(monkeypatch):
    def no_cuda(*a, **k):
        raise AssertionError("a CPU run touched the CUDA generators")
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", no_cuda)
    monkeypatch.setattr(torch.cuda, "get_rng_state", no_cuda)
    monkeypatch.setattr(torch.cuda, "set_rng_state", no_cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine running --device cpu
    st = rng_state(torch.device("cpu"))
    assert "cuda" not in st
    a = np.random.rand(2), torch.rand(2)
    set_rng_state(dict(st, cuda=torch.zeros(8, dtype=torch.uint8)), torch.device("cpu"))  # a GPU run's state
    b = np.random.rand(2), torch.rand(2)
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_dynamics_resume_state_loads_onto_another_device(tmp_path, fake_root, monkeypatch):
    from get_training_dynamics import get_args_parser
    from yoco.dynamics import DynamicsTrainer, load_state, resolve_settings, save_state
    from yoco.dynamics_io import DynamicsLog

    args = get_args_parser().parse_args(["-d", "cifar10", "--ipc", "1", "--epochs", "2", "--device", "cpu"])
    resolve_settings(args)
    x, y = torch.rand(10, 3, 32, 32), torch.arange(10)
    args.factor, args.nclass, args.num_samples = 1, 10, len(x)
    cpu = DynamicsTrainer(args, x, y, torch.device("cpu"))
    log = DynamicsLog()
    cpu.epoch(0, log)
    (tmp_path / "r").mkdir()
    save_state(str(tmp_path / "r"), cpu, log, [], 1, {"acc": 1.0, "epoch": 0})
    meta = DynamicsTrainer(args, x, y, META)
    epoch_done, _, chunks = load_state(str(tmp_path / "r"), meta)
    assert epoch_done == 1 and len(chunks) == 1
    assert next(meta.model.parameters()).device == META
    assert all(s["momentum_buffer"].device == META for s in meta.opt.state.values())


# ---------------------------------------------------------------------------------------------------
# strict determinism: the stand-ins compute what the originals compute
def test_deterministic_standins_equal_the_originals():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 16, 16, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[[1.1, 0.2, 0.0], [-0.15, 0.9, 0.0]]], dtype=torch.float64).expand(3, 2, 3)
    grid = F.affine_grid(theta, [3, 2, 16, 16], align_corners=False)
    cases = [(lambda t: F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False),
              lambda t: bilinear_resize(t, (32, 32), force=True)),
             (lambda t: F.adaptive_avg_pool2d(t, 1), lambda t: global_avg_pool(t, force=True)),
             (lambda t: F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False),
              lambda t: grid_sample_bilinear(t, grid, force=True))]
    for original, standin in cases:
        a, b = original(x), standin(x)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        g = torch.randn_like(a)
        torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(b, x, g)[0], rtol=0, atol=1e-12)
    # used only where the original's backward would raise: never on the CPU
    assert bilinear_resize(x, (32, 32)).grad_fn.name().startswith("UpsampleBilinear2D")


def test_a_nondeterministic_kernel_is_a_one_line_error(capsys):
    def main(args):
        raise RuntimeError("grid_sampler_2d_backward_cuda does not have a deterministic implementation, but you "
                           "set 'torch.use_deterministic_algorithms(True)'. You can turn off determinism ...")
    with pytest.raises(SystemExit) as e:
        cli(main, condense_reg.get_args_parser, ["--ipc", "2", "--deterministic", "True"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: --deterministic True: grid_sampler_2d_backward_cuda has no deterministic kernel")


def test_strict_mode_is_on_in_deterministic_runs():
    from utils.config import set_determinism
    try:
        set_determinism(True)
        assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        set_determinism(False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.allow_tf32
    finally:
        set_determinism(False)


def test_kmeans_runs_on_the_cpu(monkeypatch):
    from training import kmeans as km
    seen = []
    assign = km._assign
    monkeypatch.setattr(km, "_assign", lambda x, c: seen.append(x.device.type) or assign(x, c))
    x = torch.randn(30, 4)
    cent, labels = km.kmeans(x, 3, seed=1)
    assert set(seen) == {"cpu"} and labels.device.type == "cpu"
    ref = sys.modules["training.kmeans"].kmeans(x.clone(), 3, seed=1)
    assert torch.equal(ref[1], labels)


# ---------------------------------------------------------------------------------------------------
# ImageNet input off the main thread
def test_streaming_decode_threads_give_the_same_batches(fake_root):
    from data.datasets import imagenet_folder, imagenet_load_transform

    ds = imagenet_folder(f"{fake_root}/imagenet", "train", 10, transform=imagenet_load_transform(32))
    batches = []
    for workers in (0, 2):
        torch.manual_seed(0)
        s = ClassSampler(ds, ds.targets, 10, 4, workers=workers)
        batches.append([s.class_sample(c)[0] for c in range(3)] + [s.sample()[0]])
    assert all(torch.equal(a, b) for a, b in zip(*batches))


def test_augmentation_workers_are_reproducible():
    from data.loaders import TensorLoader
    from training.augment import imagenet_train_transform

    x, y = torch.rand(12, 3, 40, 40), torch.arange(12) % 3
    tf = imagenet_train_transform(32, from_tensor=True)

    def epoch(workers):
        torch.manual_seed(5)
        loader = TensorLoader(x, y, 5, True, "cpu", sample_transform=tf, workers=workers)
        out = [(bx.clone(), by.clone()) for bx, by in loader]
        loader.close()
        return out
    a, b, c = epoch(2), epoch(2), epoch(0)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))  # same seed, same draws
    assert [p[0].shape for p in a] == [q[0].shape for q in c] == [(5, 3, 32, 32)] * 2 + [(2, 3, 32, 32)]
    assert all(torch.equal(p[1], q[1]) for p, q in zip(a, c))  # the same samples in the same batches
