"""Parallel condensation over torchrun ranks (condensation/parallel.py, condense_reg_mp.py): real 2-process
``torchrun`` jobs on the CPU (gloo) with tiny budgets, compared with the single-process runs they stand for."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_script, script_env
from fakedata import make_cifar
from helpers import C10, aim_runs, data, torchrun, torchrun_cmd

# C10 (helpers.py): fake CIFAR-10 in 5 partitions of 2 classes (2 ranks: rank 0 has 0, 2, 4; rank 1 has 1, 3)
# tiny real Fashion-MNIST (the Debian package; --data_dir points nowhere so the loader falls back to it)
FASHION = ["-d", "fashion", "--data_dir", "no-such-folder", "--device", "cpu", "--width", "0.125", "--niter", "1",
           "--inner_loop", "5", "--n_data", "16", "--batch_real", "8", "--ipc", "3", "-f", "2",
           "--adaptive_reg", "True", "--adaptive_period", "2", "--deterministic", "True"]


def script_cmd(script, *args):
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def run_parallel(cmds, cwd, slots=2):
    """Run the commands, ``slots`` at a time (the results do not depend on it: one thread each); all must pass."""
    waiting, running = list(cmds), []
    while waiting or running:
        while waiting and len(running) < slots:
            cmd = waiting.pop(0)
            running.append((cmd, subprocess.Popen(cmd, cwd=cwd, env=script_env(), stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True)))
        cmd, proc = running.pop(0)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{cmd[1:3]} failed ({proc.returncode}):\n{out[-4000:]}"


def records(folder, kind):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]


@pytest.fixture(scope="module")
def c10(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    make_cifar(str(root / "data"), 10, n_train=300, n_test=50)
    return root


@pytest.fixture(scope="module")
def world_run(c10):
    """The uninterrupted 2-rank job over 5 partitions (rank 0: phases 0, 2, 4; rank 1: phases 1, 3)."""
    p = torchrun(2, *C10, "--data_dir", c10 / "data", "--save_dir", "runs/w", cwd=c10)
    return c10, p


@pytest.mark.slow
def test_two_ranks_give_the_files_of_each_phase_alone(world_run):
    root, p = world_run
    assert "rank 0 of 2: phases [0, 2, 4]" in p.stdout and "rank 1 of 2: phases [1, 3]" in p.stdout
    alone = [script_cmd("condense_reg_mp.py", *C10, "--data_dir", root / "data", "--save_dir", "runs/alone",
                        "--phase", ph) for ph in range(5)]
    run_parallel(alone, cwd=root)  # each phase in its own process, two at a time
    for ph in range(5):
        for it in (2, 10):
            a, b = data(root / f"runs/w_2_phase{ph}", it), data(root / f"runs/alone_2_phase{ph}", it)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), (ph, it)
        assert torch.equal(a[1], torch.arange(2 * ph, 2 * ph + 2).repeat_interleave(2))
    # rank 0 merged the five finished partitions: one class-major set + its manifest
    x, y = torch.load(root / "runs/w_2_merged/data.pt", weights_only=True)
    parts = [data(root / f"runs/w_2_phase{ph}", 10) for ph in range(5)]
    assert torch.equal(x, torch.cat([q[0] for q in parts])) and torch.equal(y, torch.arange(10).repeat_interleave(2))
    with open(root / "runs/w_2_merged/manifest.json") as f:
        man = json.load(f)
    assert [q["iteration"] for q in man["parts"]] == [10] * 5
    # the phases run as separate jobs are merged by the same command + --merge: the same set
    p = run_script("condense_reg_mp.py", *C10, "--data_dir", root / "data", "--save_dir", "runs/alone", "--merge",
                   cwd=root)
    assert "merged 5 partitions" in p.stdout
    assert torch.equal(torch.load(root / "runs/alone_2_merged/data.pt", weights_only=True)[0], x)


def _rank_pid(agent, rank):
    """The worker process of ``rank`` under the torchrun agent (read from /proc)."""
    todo, seen = [agent.pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                envs = f.read().split(b"\0")
            if pid != agent.pid and f"RANK={rank}".encode() in envs and b"LOCAL_RANK=" + str(rank).encode() in envs:
                return pid
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the rank's process in /proc (Linux)")
def test_a_killed_rank_and_a_relaunch_finish_as_the_uninterrupted_job(world_run):
    root, _ = world_run
    args = [*C10, "--data_dir", root / "data", "--save_dir", "runs/k"]
    agent = subprocess.Popen(torchrun_cmd(2, *args), cwd=root, env=script_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    ck = root / "runs/k_2_phase1/checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and agent.poll() is None and not ck.exists():
        time.sleep(0.05)
    pid = _rank_pid(agent, 1)
    assert agent.poll() is None and pid is not None, "the job ended before rank 1 could be killed"
    os.kill(pid, signal.SIGKILL)
    _, err = agent.communicate(timeout=300)
    assert agent.returncode != 0 and not (root / "runs/k_2_merged").exists()
    assert "condense_reg_mp.py FAILED" in err or "Signal 9" in err or "SIGKILL" in err
    p = torchrun(2, *args, "--resume", cwd=root)
    assert "resumed from" in p.stdout or "nothing to do" in p.stdout
    for ph in range(5):
        a, b = data(root / f"runs/w_2_phase{ph}", 10), data(root / f"runs/k_2_phase{ph}", 10)
        assert torch.equal(a[0], b[0]), ph
    assert torch.equal(torch.load(root / "runs/w_2_merged/data.pt", weights_only=True)[0],
                       torch.load(root / "runs/k_2_merged/data.pt", weights_only=True)[0])


@pytest.mark.slow
def test_a_failing_rank_names_its_rank_and_phase(c10):
    """Rank 1's partition cannot start (its folder is a file): the job fails, naming rank and phase."""
    (c10 / "runs").mkdir(exist_ok=True)
    (c10 / "runs/f_2_phase1").write_text("not a folder")
    p = torchrun(2, *C10, "--data_dir", c10 / "data", "--save_dir", "runs/f", "--stop_after", "1", cwd=c10,
                 check=False)
    assert p.returncode != 0
    assert "error: rank 1 of 2, phase 1 (runs/f_2_phase1): the run folder runs/f_2_phase1 exists and is not a " \
           "folder" in p.stderr


@pytest.mark.slow
def test_exact_mode_equals_the_single_process_run_on_fashion(tmp_path):
    """--exact True on 2 ranks (2 partitions of 5 classes) against condense_reg.py --exact True: the same
    images (bit for bit here; the bound is 1e-5) and the same MLS trajectory."""
    run_parallel([script_cmd("condense_reg.py", *FASHION, "--exact", "True", "--eval_during", "False",
                             "--save_dir", "single"),
                  torchrun_cmd(2, *FASHION, "--exact", "True", "--nclass_sub", "5", "--save_dir", "sharded")],
                 cwd=tmp_path)
    n = 20
    a = data(tmp_path / "single", n)
    b = torch.load(tmp_path / "sharded_5_merged/data.pt", weights_only=True)
    assert torch.equal(a[1], b[1]) and (a[0] - b[0]).abs().max() <= 1e-5
    mls_single = records(tmp_path / "single", "mls")
    assert len(mls_single) == n // 2 + 1  # it 1 and every second iteration
    for ph in (0, 1):
        mls = records(tmp_path / f"sharded_5_phase{ph}", "mls")
        assert [r["mls"] for r in mls] == [r["mls"] for r in mls_single]
        assert [r["dbar"] for r in mls] == [r["dbar"] for r in mls_single]
    assert len({r["mls"] for r in mls_single}) > 1, "the MLS never moved: the check would be weak"


@pytest.mark.slow
def test_global_mls_makes_one_decision_for_all_partitions(c10):
    """--global_mls True (not exact): both partitions log the same d̄ and MLS at every window, and the
    first window's d̄ is the mean of what each partition measures alone (2 dp)."""
    args = [*C10[:-1], "5", "--data_dir", c10 / "data", "--stop_after", "1"]
    torchrun(2, *args, "--save_dir", "runs/g", "--global_mls", "True", "--use_aim", "True", "--aim_repo", "aim", cwd=c10)
    torchrun(2, *args, "--save_dir", "runs/p", cwd=c10, check=True)
    g0, g1 = (records(c10 / f"runs/g_5_phase{ph}", "mls") for ph in (0, 1))
    assert g0 == g1
    # tracked under torchrun: one Aim run per partition, named with its phase, holding that partition's classes
    runs = {r["name"]: r for r in aim_runs(c10 / "aim")}
    assert sorted(runs) == ["cifar10_ipc2_2_5_phase0", "cifar10_ipc2_2_5_phase1"]  # "_2": --adaptive_period 2
    for ph, first in ((0, 0), (1, 5)):
        assert ("regularized_ipc", (("subset", f"class_{first}"),)) in runs[f"cifar10_ipc2_2_5_phase{ph}"]["seqs"]
    p0, p1 = (records(c10 / f"runs/p_5_phase{ph}", "mls")[0]["dbar"] for ph in (0, 1))
    assert p0 != p1
    assert g0[0]["dbar"] == pytest.approx([(x + y) / 2 for x, y in zip(p0, p1)], abs=0.0101)


@pytest.mark.slow
def test_sync_modes_need_one_partition_per_rank_and_torchrun(c10):
    p = torchrun(2, *C10, "--data_dir", c10 / "data", "--exact", "True", cwd=c10, check=False)
    assert p.returncode != 0 and "--exact True steps all 5 partitions together, one per rank, but the job has 2 " \
                                  "ranks" in p.stderr
    p = run_script("condense_reg_mp.py", *C10, "--data_dir", c10 / "data", "--global_mls", "True", "--phase", "0",
                   cwd=c10, check=False)
    assert p.returncode == 2 and "launch them under torchrun" in p.stderr
    p = run_script("condense_reg.py", *C10[:-2], "--data_dir", c10 / "data", "--global_mls", "True", cwd=c10,
                   check=False)
    assert p.returncode == 2 and "--global_mls is for condense_reg_mp.py" in p.stderr


# ------------------------------------------------------------------------------------------------
# the pieces


def test_coast_replays_the_single_optimiser_bit_for_bit():
    from condensation.parallel import coast

    torch.manual_seed(0)
    whole = torch.randn(6, 5, requires_grad=True)
    shard = whole.detach()[:3].clone().requires_grad_(True)
    closed = shard.detach().clone().requires_grad_(True)
    o_whole, o_shard, o_closed = (torch.optim.SGD([p], lr=0.3, momentum=0.9) for p in (whole, shard, closed))
    for _ in range(4):  # two classes of 3 rows; this shard holds the first
        for cls in (0, 1):
            g = torch.zeros(6, 5)
            g[3 * cls:3 * cls + 3] = torch.randn(3, 5)
            whole.grad = g
            o_whole.step()
            if cls == 0:
                shard.grad, closed.grad = g[:3].clone(), g[:3].clone()
                o_shard.step()
                o_closed.step()
            else:
                coast(o_shard, 1)
                coast(o_closed, 1, closed=True)
    assert torch.equal(whole.detach()[:3], shard.detach())
    assert (whole.detach()[:3] - closed.detach()).abs().max() < 1e-5


def test_coast_closed_form_is_m_zero_steps():
    from condensation.parallel import coast

    p = torch.randn(4, requires_grad=True)
    q = p.detach().clone().requires_grad_(True)
    op, oq = torch.optim.SGD([p], lr=0.1, momentum=0.5), torch.optim.SGD([q], lr=0.1, momentum=0.5)
    g = torch.randn(4)
    p.grad, q.grad = g.clone(), g.clone()
    op.step()
    oq.step()
    for _ in range(7):
        p.grad = torch.zeros(4)
        op.step()
    coast(oq, 7, closed=True)
    assert torch.allclose(p, q, atol=1e-6, rtol=0)
    assert torch.allclose(op.state[p]["momentum_buffer"], oq.state[q]["momentum_buffer"], atol=1e-7, rtol=0)
    fresh = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=1, momentum=0.9)
    coast(fresh, 5)  # no step yet: no buffer, nothing moves
    assert not fresh.state


def test_class_streams_do_not_depend_on_the_sharding_and_leave_the_global_stream():
    from condensation.parallel import ClassStreams

    torch.manual_seed(5)
    before = torch.get_rng_state()
    every, shard = ClassStreams(7, range(4), "cpu"), ClassStreams(7, [2, 3], "cpu")
    assert torch.equal(torch.get_rng_state(), before)
    draws = {}
    for streams, key in ((every, "all"), (shard, "shard")):
        for c in ([0, 1, 2, 3] if key == "all" else [2, 3]):
            with streams.of_class(c):
                draws[key, c] = (torch.rand(3), torch.randperm(5))
            with streams.of_class(c):  # the stream continues where it stopped
                draws[key, c, 2] = torch.rand(3)
    for c in (2, 3):
        assert torch.equal(draws["all", c][0], draws["shard", c][0]) and torch.equal(draws["all", c, 2],
                                                                                      draws["shard", c, 2])
    assert not torch.equal(draws["all", 2][0], draws["all", 3][0])
    assert not torch.equal(draws["all", 2][0], draws["all", 2, 2])
    assert torch.equal(torch.get_rng_state(), before)
    restored = ClassStreams(7, [2, 3], "cpu")
    restored.load_state_dict(shard.state_dict())
    with restored.of_class(2), torch.no_grad():
        a = torch.rand(3)
    with shard.of_class(2):
        b = torch.rand(3)
    assert torch.equal(a, b)


def test_phases_of_ranks():
    from condensation.parallel import World, phases_of

    assert [phases_of(r, 2, 5) for r in range(2)] == [[0, 2, 4], [1, 3]]
    assert phases_of(3, 4, 2) == []
    w = World.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (w.rank, w.size, w.local_rank, w.enabled) == (1, 2, 1, True)
    assert not World.from_env({}).enabled


def test_partition_folders_keep_the_reference_names():
    """Without --save_dir the partition folder is the old ``default_save_dir`` of ``--phase p``."""
    from condense_reg_mp import get_args_parser, partition_folder
    from condensation.run_files import default_save_dir
    from condensation.runner import finalize_args
    from cli.arguments import parse_args

    args = parse_args(get_args_parser(), ["--reproduce", "-d", "cifar100", "-f", "2", "--ipc", "10",
                                          "--adaptive_reg", "True", "--nclass_sub", "20", "--phase", "3"])
    assert partition_folder(args, 3) == default_save_dir(finalize_args(args))
    assert partition_folder(args, 3).endswith("_20_phase3")
    args.exact = True
    assert "_exact_20_phase3" in partition_folder(args, 3)
