"""Merging the class partitions of condense_reg_mp.py (reference he-y/Multisize-Dataset-Condensation/test.py;
docs/algorithms.md#class-partitioned-condensation): ``data.partitions``
(resolve, merge, manifest, command line) and ``test.py -s idc_cat`` on the same partitions."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_script
from data.partitions import MANIFEST, merge_parts, merged_dir, resolve_parts
from data.condensed import save_condensed
from utils.errors import UserError
from utils.files import save_config

COMMON = ["--epochs", "2", "--device", "cpu", "--batch_size", "32"]


def part_set(phase, k, ipc, seed=0, nch=3, size=32):
    """A partition's condensed set: k classes with their real ids, class-major (MDC reference condense_reg.py, condense;
    docs/condensing.md#outputs-and-resume)."""
    g = torch.Generator().manual_seed(1000 * seed + phase)
    x = torch.rand(k * ipc, nch, size, size, generator=g)
    y = torch.arange(phase * k, (phase + 1) * k).repeat_interleave(ipc)
    return x, y


def make_part(base, k, phase, its=(500,), ipc=2, data_seed=0, settings=True, **overrides):
    """``<base>_{k}_phase{p}`` as condense_reg_mp.py leaves it: data_{it}.pt files (a different set at every
    iteration) and args.yaml (niter 5, inner_loop 1: final iteration 500). Returns {it: (x, y)}."""
    folder = f"{base}_{k}_phase{phase}"
    sets = {}
    for it in its:
        sets[it] = part_set(phase, k, ipc, seed=data_seed + it)
        save_condensed(os.path.join(folder, f"data_{it}.pt" if it else "data.pt"), *sets[it])
    if settings:
        cfg = dict(dataset="cifar10", nclass=10, nch=3, size=32, ipc=ipc, factor=2, niter=5, inner_loop=1,
                   lr_img=0.005, seed=0, nclass_sub=k, phase=phase, save_dir=folder, tag="")
        cfg.update(overrides)
        save_config(argparse.Namespace(**cfg), os.path.join(folder, "args.yaml"))
    return sets


def make_parts(base, nclass, k, **kw):
    return [make_part(base, k, p, **kw) for p in range(nclass // k)]


def load(path):
    return torch.load(path, weights_only=True)


def listing(folder):
    """{name: bytes} of a folder (to show that a failed merge changed nothing)."""
    if not os.path.isdir(folder):
        return None
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


# ------------------------------------------------------------------------------------------------
# resolve and merge


@pytest.mark.parametrize("nclass,k", [(10, 5), (10, 2)])
def test_merge_equals_concatenation(tmp_path, nclass, k):
    base = str(tmp_path / "run")
    sets = make_parts(base, nclass, k, its=(300, 500))
    parts = resolve_parts(base, k, nclass)
    assert [p.phase for p in parts] == list(range(nclass // k))
    assert all(p.iteration == 500 and p.final_iteration == 500 and p.complete for p in parts)
    assert parts[1].classes == list(range(k, 2 * k)) and parts[1].file.endswith(f"run_{k}_phase1/data_500.pt")
    assert parts[0].settings["lr_img"] == 0.005 and "phase" not in parts[0].settings
    assert "save_dir" not in parts[0].settings  # only number-affecting settings (NUMBER_KEYS)
    logs = []
    out = merge_parts(base, k, nclass, log=logs.append)
    assert out == merged_dir(base, k) == f"{base}_{k}_merged"
    x, y = load(os.path.join(out, "data.pt"))
    assert torch.equal(x, torch.cat([s[500][0] for s in sets]))
    assert torch.equal(y, torch.arange(nclass).repeat_interleave(2)) and y.dtype == torch.long
    with open(os.path.join(out, MANIFEST)) as f:
        man = json.load(f)
    assert man["version"] == 1 and man["nclass"] == nclass and man["nclass_sub"] == k and man["ipc"] == 2
    assert man["base"] == os.path.abspath(base) and man["data"] == "data.pt"
    assert man["parts"][1] == {"phase": 1, "classes": [k, 2 * k - 1], "folder": os.path.abspath(parts[1].folder),
                               "file": "data_500.pt", "iteration": 500, "final_iteration": 500, "complete": True}
    assert man["settings"]["niter"] == 5 and "phase" not in man["settings"]
    assert man["allow_mismatch"] is False and man["mismatch"] == {}
    assert len(logs) == 1 and "phase 0 data_500.pt (it 500 of 500)" in logs[0]
    # an explicit --niter picks that file of every partition (and merge refuses it as unfinished)
    assert [p.iteration for p in resolve_parts(base, k, nclass, niter=300)] == [300] * (nclass // k)


def test_missing_partitions_named(tmp_path):
    base = str(tmp_path / "run")
    make_part(base, 2, 0)
    make_part(base, 2, 2)
    os.makedirs(f"{base}_2_phase4")  # started, nothing saved yet
    with pytest.raises(UserError) as e:
        merge_parts(base, 2, 10)
    msg = str(e.value)
    assert "\n" not in msg and "3 of 5 partitions" in msg
    for p in (1, 3):
        assert f"phase {p} ({base}_2_phase{p})" in msg
    assert "phase 4" in msg and "no data_*.pt" in msg and "phase 0" not in msg
    assert "condense_reg_mp.py" in msg and "--phase" in msg and "torchrun" in msg
    assert not os.path.exists(merged_dir(base, 2))
    with pytest.raises(UserError, match="without the _"):  # a partition folder given as the base
        resolve_parts(f"{base}_2_phase0", 2, 10)
    with pytest.raises(UserError, match="must divide --nclass 10"):
        resolve_parts(base, 3, 10)


def test_interrupted_partition_refused_then_allowed(tmp_path):
    base = str(tmp_path / "run")
    done = make_part(base, 5, 0, its=(300, 500))
    cut = make_part(base, 5, 1, its=(300,))  # killed between its saves at 300 and 500
    for call in (lambda: resolve_parts(base, 5, 10), lambda: merge_parts(base, 5, 10)):
        with pytest.raises(UserError) as e:
            call()
        msg = str(e.value)
        assert "different iterations" in msg and "\n" not in msg
        assert "phase 0 data_500.pt (it 500 of 500)" in msg and "phase 1 data_300.pt (it 300 of 500)" in msg
        assert "--phase 1 --resume" in msg and "--allow_mismatch True" in msg
    assert not os.path.exists(merged_dir(base, 5))
    # accepted on request, and the manifest says what was accepted
    out = merge_parts(base, 5, 10, allow_mismatch=True, log=lambda s: None)
    x, _ = load(os.path.join(out, "data.pt"))
    assert torch.equal(x, torch.cat([done[500][0], cut[300][0]]))
    with open(os.path.join(out, MANIFEST)) as f:
        man = json.load(f)
    assert man["allow_mismatch"] is True
    assert man["mismatch"] == {"iterations": {"0": 500, "1": 300}, "incomplete": [1]}
    assert man["parts"][1]["complete"] is False and man["parts"][1]["iteration"] == 300
    # the phase is resumed to its end: merging again replaces both files
    finished = make_part(base, 5, 1, its=(500,))
    merge_parts(base, 5, 10, log=lambda s: None)
    x, _ = load(os.path.join(out, "data.pt"))
    assert torch.equal(x, torch.cat([done[500][0], finished[500][0]]))
    with open(os.path.join(out, MANIFEST)) as f:
        man = json.load(f)
    assert man["mismatch"] == {} and man["allow_mismatch"] is False


def test_unfinished_partitions_refused_by_merge(tmp_path):
    base = str(tmp_path / "run")
    make_parts(base, 10, 5, its=(300,))  # both stopped at 300 of 500: same iteration, so idc_cat takes them
    parts = resolve_parts(base, 5, 10)
    assert [p.complete for p in parts] == [False, False]
    with pytest.raises(UserError) as e:
        merge_parts(base, 5, 10)
    msg = str(e.value)
    assert "phase 0 at iteration 300 of 500, phase 1 at iteration 300 of 500" in msg
    assert "phases 0, 1 with `condense_reg_mp.py ... --nclass_sub 5 --phase P --resume`" in msg and "\n" not in msg
    assert not os.path.exists(merged_dir(base, 5))
    out = merge_parts(base, 5, 10, require_complete=False, log=lambda s: None)
    with open(os.path.join(out, MANIFEST)) as f:
        man = json.load(f)
    assert man["require_complete"] is False and man["mismatch"] == {"incomplete": [0, 1]}


def test_different_settings_refused(tmp_path):
    base = str(tmp_path / "run")
    make_part(base, 5, 0)
    make_part(base, 5, 1, lr_img=0.01, seed=1)
    with pytest.raises(UserError) as e:
        resolve_parts(base, 5, 10)
    msg = str(e.value)
    assert "different settings" in msg and "seed: 0 in phase 0 vs 1 in phase 1" in msg and "phases" not in msg
    assert "lr_img: 0.005 in phase 0 vs 0.01 in phase 1" in msg and "--allow_mismatch True" in msg
    old = listing(merged_dir(base, 5))
    with pytest.raises(UserError, match="different settings"):
        merge_parts(base, 5, 10)
    assert listing(merged_dir(base, 5)) == old is None
    out = merge_parts(base, 5, 10, allow_mismatch=True, log=lambda s: None)
    with open(os.path.join(out, MANIFEST)) as f:
        man = json.load(f)
    assert man["mismatch"] == {"settings": {"lr_img": {"0": 0.005, "1": 0.01}, "seed": {"0": 0, "1": 1}}}
    assert "seed" not in man["settings"] and man["settings"]["ipc"] == 2


def test_released_parts_without_args_yaml(tmp_path):
    """The authors' released partitions: a data.pt and no args.yaml (no settings or completeness check)."""
    base = str(tmp_path / "released")
    sets = make_parts(base, 10, 5, its=(0,), settings=False)
    parts = resolve_parts(base, 5, 10, niter=2000)
    assert [(p.iteration, p.final_iteration, p.complete, p.settings) for p in parts] == [(None, None, None, None)] * 2
    out = merge_parts(base, 5, 10, log=lambda s: None)
    assert torch.equal(load(os.path.join(out, "data.pt"))[0], torch.cat([s[0][0] for s in sets]))
    with open(os.path.join(out, MANIFEST)) as f:
        man = json.load(f)
    assert man["settings"] is None and man["parts"][0]["file"] == "data.pt" and man["parts"][0]["complete"] is None


def test_bad_partition_contents_write_nothing(tmp_path):
    base = str(tmp_path / "run")
    make_part(base, 5, 0)
    make_part(base, 5, 1)
    out = merge_parts(base, 5, 10, log=lambda s: None)
    before = listing(out)
    x, y = part_set(1, 5, 2)
    save_condensed(f"{base}_5_phase1/data_500.pt", x, y - 5)  # local ids instead of the real ones
    with pytest.raises(UserError, match="classes 5...9 of phase 1"):
        merge_parts(base, 5, 10)
    x[0, 0, 0, 0] = float("nan")
    save_condensed(f"{base}_5_phase1/data_500.pt", x, y)  # a diverged partition
    with pytest.raises(UserError, match="NaN"):
        merge_parts(base, 5, 10)
    save_condensed(f"{base}_5_phase1/data_500.pt", *part_set(1, 5, 3))  # another --ipc
    with pytest.raises(UserError, match="one --ipc"):
        merge_parts(base, 5, 10)
    assert listing(out) == before  # the previous merge is untouched


# ------------------------------------------------------------------------------------------------
# command line


def merge_cli(*argv):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "data.partitions", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_merge_command_line(tmp_path):
    base = str(tmp_path / "run")
    make_part(base, 5, 0, its=(300, 500))
    make_part(base, 5, 1, its=(300,))
    p = merge_cli(base, "--nclass_sub", 5, "--nclass", 10)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "--resume" in lines[0], p.stderr
    assert not os.path.exists(merged_dir(base, 5))
    p = merge_cli(base, "--nclass_sub", 5, "--nclass", 10, "--niter", 300)  # both at 300 of 500: unfinished
    assert p.returncode == 2 and "unfinished" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    p = merge_cli(base, "--nclass_sub", 5, "--nclass", 10, "--allow_mismatch")
    assert p.returncode == 0, p.stderr
    assert "merged 2 partitions" in p.stdout and os.path.exists(os.path.join(merged_dir(base, 5), "data.pt"))
    p = merge_cli(base, "--nclass_sub", 3, "--nclass", 10)
    assert p.returncode == 2 and p.stderr.startswith("error: --nclass_sub 3"), p.stderr


# ------------------------------------------------------------------------------------------------
# test.py -s idc_cat on the same partitions


@pytest.mark.slow
def test_test_py_idc_cat_equals_merged(fake_root, tmp_path):
    base = str(tmp_path / "run")
    make_parts(base, 10, 5, its=(300, 500))
    cat, merged = tmp_path / "cat.pt", tmp_path / "merged.pt"
    p = run_script("test.py", "-d", "cifar10", "-f", "2", "--ipc", "2", "-s", "idc_cat", "--nclass_sub", "5",
                   "--test_data_dir", base, "--data_dir", fake_root, "--save_subset", cat, *COMMON)
    assert "idc_cat: phase 0 data_500.pt (it 500 of 500), phase 1 data_500.pt (it 500 of 500)" in p.stdout
    out = merge_parts(base, 5, 10, log=lambda s: None)
    run_script("test.py", "-d", "cifar10", "-f", "2", "--ipc", "2", "--test_data_dir", out,
               "--data_dir", fake_root, "--save_subset", merged, *COMMON)
    (cx, cy), (mx, my) = load(cat), load(merged)
    assert cx.shape == (80, 3, 32, 32)  # 10 classes x 2 images x 2² crops: decoded
    assert torch.equal(cx, mx) and torch.equal(cy, my)


@pytest.mark.slow
def test_test_py_refuses_interrupted_partition(fake_root, tmp_path):
    base = str(tmp_path / "run")
    make_part(base, 5, 0, its=(300, 500))
    make_part(base, 5, 1, its=(300,))  # the reference (and we, before) silently evaluated its data_300.pt
    argv = ["-d", "cifar10", "-f", "2", "--ipc", "2", "-s", "idc_cat", "--nclass_sub", "5", "--test_data_dir", base,
            "--data_dir", fake_root, "--results_file", tmp_path / "r.json", *COMMON]
    p = run_script("test.py", *argv, check=False)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "phase 1 data_300.pt (it 300 of 500)" in lines[0] and "--resume" in lines[0]
    assert not os.path.exists(tmp_path / "r.json")
    p = run_script("test.py", *argv, "--allow_mismatch", "True")
    assert "idc_cat: phase 0 data_500.pt (it 500 of 500), phase 1 data_300.pt (it 300 of 500)" in p.stdout


def test_merge_into_a_chosen_folder(tmp_path):
    """``python -m data.partitions ... --out DIR`` writes the merged set there, nothing next to the partitions."""
    base = str(tmp_path / "run")
    make_part(base, 5, 0)
    make_part(base, 5, 1)
    out = merge_parts(base, 5, 10, log=lambda s: None, out=str(tmp_path / "elsewhere"))
    assert out == str(tmp_path / "elsewhere") and sorted(os.listdir(out)) == ["data.pt", MANIFEST]
    assert not os.path.exists(f"{base}_5_merged")
