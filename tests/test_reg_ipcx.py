"""MDC regulariser: MLS selection, freezing timeline and state round trip (reference
he-y/Multisize-Dataset-Condensation/reg_ipcx.py; docs/algorithms.md#mls-selection-and-freezing)."""
import json
import random

import numpy as np
import pytest
import torch

from reg_ipcx import Regularizer, average_featlog, is_window, subset_prefix_sizes, check_mdc_args
from utils.errors import UserError

P = 100
IPC = 6  # subsets x = 1..5


def _dvec(peak_x=None, base=1.0, bump=0.0):
    """A d-vector (x = 1..IPC-1) equal to ``base`` except ``base + bump`` at ``peak_x``."""
    return [base + (bump if x == peak_x else 0.0) for x in range(1, IPC)]


def _run_schedule(n_iter, window_vectors, nclass=2, inner_loop=3, class_wise=False, **switches):
    """Driver-like loop (MDC reference condense_reg.py, condense; docs/algorithms.md#the-condensation-loop): per-class
    update_status/get_freeze_ipc every inner step,
    feature logging in windows, selection at it = t+1. Returns freeze/MLS per t and selections."""
    regs = [Regularizer(IPC, P, **switches) for _ in range(nclass)]
    freeze, mls, chosen = {}, {}, {}
    for t in range(n_iter):
        featlog = [[] for _ in range(nclass)]
        for _k in range(inner_loop):
            for c in range(nclass):
                regs[c].update_status(t)
                f = regs[c].get_freeze_ipc()
                assert freeze.setdefault((c, t), f) == f  # idempotent within an iteration
                mls[(c, t)] = regs[c].regularized()
                if is_window(t, P):
                    featlog[c].append(window_vectors[t])
        if is_window(t, P):
            dbar = average_featlog(featlog, nclass, inner_loop, class_wise)
            chosen[t + 1] = [regs[c].select_reg_ipc(dbar[c], t + 1) for c in range(nclass)]
    return regs, freeze, mls, chosen


def test_window_and_prefix_helpers():
    assert [t for t in range(400) if is_window(t, P)] == [0, 99, 199, 299, 399]
    assert subset_prefix_sizes(4, 2) == [4, 8, 12]
    assert subset_prefix_sizes(3, 1) == [1, 2]
    assert subset_prefix_sizes(3, 3) == [9, 18]


def test_ipc_validation():
    with pytest.raises(UserError, match="--ipc >= 2"):
        Regularizer(1, P)
    with pytest.raises(UserError):
        check_mdc_args(10, factor=2, batch_syn_max=16)
    with pytest.raises(UserError):
        check_mdc_args(10, factor=2, decode_type="multi")
    check_mdc_args(10, factor=2, batch_syn_max=128)


def test_paper_example_1_3_5_2():
    """The freezing example of docs/algorithms.md#freezing: MLS 1 -> 3 -> 5 -> 2 selected at it = 1, 100, 200, 300."""
    vecs = {0: _dvec(4, bump=9.0), 399: _dvec()}  # at it=1 argmax would be x=4; first MLS is 1
    # Δ at it=100 compares t=99 with t=0: make x=3 change most; then x=5, then x=2.
    vecs[99] = [v + (2.0 if x == 3 else 0.1) for x, v in zip(range(1, IPC), vecs[0])]
    vecs[199] = [v + (3.0 if x == 5 else 0.2) for x, v in zip(range(1, IPC), vecs[99])]
    vecs[299] = [v - (1.5 if x == 2 else 0.3) for x, v in zip(range(1, IPC), vecs[199])]
    regs, freeze, mls, chosen = _run_schedule(400, vecs)
    assert chosen == {1: [1, 1], 100: [3, 3], 200: [5, 5], 300: [2, 2], 400: [4, 4]}
    for c in range(2):
        assert mls[(c, 0)] == [] and freeze[(c, 0)] == -1          # t = 0: plain IDC
        for t in range(1, 100):                                     # x = 1: nothing frozen
            assert mls[(c, t)] == [1] and freeze[(c, t)] == -1
        # t = 100: x=1 deselected but only marked finished at quit = 101
        assert mls[(c, 100)] == [3] and freeze[(c, 100)] == -1
        assert not regs[c].reg_list[1].regularize
        for t in range(101, 200):
            assert mls[(c, t)] == [3] and freeze[(c, t)] == 1
        for t in range(200, 300):
            assert mls[(c, t)] == [5] and freeze[(c, t)] == 3
        for t in range(300, 400):
            assert mls[(c, t)] == [2] and freeze[(c, t)] == 1
        r = regs[c]
        assert [q.iteration for q in r.reg_list] == [-1, 101, 400, 200, 500, 300, -1]
        assert [q.keep_freeze for q in r.reg_list] == [False, True, False, True, False, True, False]
        assert len(r.history) == 5 and r.selections[:4] == [[1, 1], [100, 3], [200, 5], [300, 2]]


def test_first_window_rule():
    r = Regularizer(IPC, P)
    assert r.select_reg_ipc(_dvec(5, bump=100.0), 1) == 1
    assert r.last_delta is None and r.reg_list[1].iteration == 1 + P
    # no previous vector (e.g. a fresh regulariser at a later window) -> also x = 1
    r2 = Regularizer(IPC, P)
    assert r2.select_reg_ipc(_dvec(5, bump=100.0), 200) == 1
    assert r2.reg_list[1].iteration == 300


def test_reselection_moves_quit_forward():
    r = Regularizer(IPC, P)
    r.select_reg_ipc(_dvec(), 1)
    for t in range(1, 100):
        r.update_status(t)
    assert r.select_reg_ipc(_dvec(1, bump=5.0), 100) == 1      # same x again
    assert r.reg_list[1].iteration == 200
    for t in range(100, 200):
        r.update_status(t)
        assert r.regularized() == [1] and r.get_freeze_ipc() == -1
        assert not r.reg_list[1].keep_freeze
    r.update_status(200)                                         # not re-selected: finished
    assert r.regularized() == [] and r.reg_list[1].keep_freeze
    assert r.get_freeze_ipc() == -1                              # no active MLS -> no freezing


def test_finished_subset_selected_again_freezes_only_smaller():
    r = Regularizer(IPC, P)
    for x in (1, 2):  # mark x=1,2 finished
        r.reg_list[x].keep_freeze = True
    r.prev = _dvec()
    r.select_reg_ipc(_dvec(2, bump=1.0), 500)
    assert r.regularized() == [2] and r.get_freeze_ipc() == 1


def test_delta_in_float32_first_maximum():
    """Δ as the reference computes it: float32 |prev − cur|, not rounded again, first maximum."""
    r = Regularizer(IPC, P)
    first = [1.00, 2.63, 2.00, 1.50, 0.70]
    r.select_reg_ipc(first, 1)
    cur = [0.98, 2.61, 2.00, 1.50, 0.70]  # equal decimal differences 0.02, different float32 ones
    f32 = np.abs(np.float32(first) - np.float32(cur))
    assert f32[0] != f32[1]  # the case the old Δ rounding turned into a tie
    mls = r.select_reg_ipc(cur, 100)
    assert mls == 2 == 1 + int(np.argmax(f32)) and r.last_delta == f32.tolist()  # the old rule took x = 1
    nxt = [0.98, 2.71, 2.50, 2.00, 0.70]  # exact float32 tie of x=3 and x=4 (2.0→2.5, 1.5→2.0)
    d = np.abs(np.float32(cur) - np.float32(nxt))
    mls = r.select_reg_ipc(nxt, 200)
    assert d[2] == d[3] == d.max() and mls == 3 and r.regularized() == [3]
    with pytest.raises(ValueError):
        r.select_reg_ipc([1.0, 2.0], 300)


def test_average_featlog_is_the_reference_float32_arithmetic():
    rng = np.random.default_rng(0)
    log = rng.uniform(0, 40, size=(3, 4, 5)).astype(np.float32).astype(float).tolist()  # 3 classes, 4 steps
    g = average_featlog(log, nclass=3, inner_loop=4)
    s = np.float32(log).reshape(-1, 5).sum(0, dtype=np.float32)
    want = np.round(s / np.float32(3) / np.float32(4), 2)  # divided by nclass, then by inner_loop, in float32
    assert g[0] == want.tolist() and g[2] == g[0] and all(np.float32(v) == v for v in g[0])
    cw = average_featlog(log, nclass=3, inner_loop=4, class_wise=True)
    assert cw[1] == np.round(np.float32(log[1]).sum(0, dtype=np.float32) / np.float32(4), 2).tolist()


# ---- MDC Table 3 switches on scripted distance sequences -------------------------------------------

def _paper_vectors():
    vecs = {0: _dvec(4, bump=9.0), 399: _dvec()}
    vecs[99] = [v + (2.0 if x == 3 else 0.1) for x, v in zip(range(1, IPC), vecs[0])]
    vecs[199] = [v + (3.0 if x == 5 else 0.2) for x, v in zip(range(1, IPC), vecs[99])]
    vecs[299] = [v - (1.5 if x == 2 else 0.3) for x, v in zip(range(1, IPC), vecs[199])]
    return vecs


def test_select_distance_takes_the_largest_distance_every_window():
    vecs = _paper_vectors()
    _, _, _, chosen = _run_schedule(400, vecs, select="distance")
    want = {t + 1: 1 + int(np.argmax(np.float32(v))) for t, v in vecs.items()}  # no first-window rule
    assert {it: c[0] for it, c in chosen.items()} == want and chosen[1] == [4, 4]


def test_select_random_is_keyed_and_leaves_the_global_streams_alone():
    vecs = _paper_vectors()
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    _, _, _, a = _run_schedule(400, vecs, select="random", random_key=7)
    assert random.getstate() == states[0] and (np.random.get_state()[1] == states[1]).all()
    assert torch.equal(torch.get_rng_state(), states[2])
    _, _, _, b = _run_schedule(400, {t: _dvec() for t in vecs}, select="random", random_key=7)
    assert a == b  # the distances play no part; same key, same subsets
    assert all(len(set(c)) == 1 and 1 <= c[0] < IPC for c in a.values())  # one key: one MLS for all classes
    _, _, _, other = _run_schedule(4000, {t: _dvec() for t in range(4000) if is_window(t, P)}, select="random",
                                   random_key=8)
    picks = [c[0] for c in other.values()]
    assert set(picks) == set(range(1, IPC))  # 41 windows cover every subset
    with pytest.raises(UserError, match="mls_select"):
        Regularizer(IPC, P, select="largest")


def test_freeze_off_keeps_the_mls_trajectory_and_never_freezes():
    vecs = _paper_vectors()
    _, freeze_on, mls_on, chosen_on = _run_schedule(400, vecs)
    regs, freeze_off, mls_off, chosen_off = _run_schedule(400, vecs, freeze=False)
    assert chosen_off == chosen_on and mls_off == mls_on
    assert set(freeze_off.values()) == {-1} and max(freeze_on.values()) == 3
    assert regs[0].reg_list[1].keep_freeze  # x = 1 finished, only not frozen


def test_state_dict_json_round_trip():
    r = Regularizer(IPC, P)
    r.select_reg_ipc(_dvec(), 1)
    for t in range(1, 100):
        r.update_status(t)
    r.select_reg_ipc(_dvec(4, bump=3.0), 100)
    r.update_status(100)
    r.update_status(101)
    blob = json.dumps(r.state_dict())
    r2 = Regularizer(IPC, 7)
    r2.load_state_dict(json.loads(blob))
    assert r2.state_dict() == r.state_dict()
    assert r2.regularized() == [4] and r2.get_freeze_ipc() == 1
    assert r2.adaptive_period == P and r2.last_delta == [0.0, 0.0, 0.0, 3.0, 0.0]
    # continuing both gives the same decisions
    for reg in (r, r2):
        reg.select_reg_ipc(_dvec(2, bump=7.0), 200)
        reg.update_status(200)
    assert r.state_dict() == r2.state_dict() and r2.get_freeze_ipc() == 1  # x=1 finished, < 2
    with pytest.raises(UserError):
        Regularizer(IPC + 1, P).load_state_dict(json.loads(blob))


def test_average_featlog_global_and_class_wise():
    log = [[[1.0, 2.0], [3.0, 4.0]],              # class 0, two inner steps
           [[0.004, 0.0], [0.0, 0.001]]]          # class 1
    g = average_featlog(log, nclass=2, inner_loop=2, class_wise=False)
    assert g == [[1.0, 1.5], [1.0, 1.5]] and g[0] is not g[1]
    cw = average_featlog(log, nclass=2, inner_loop=2, class_wise=True)
    assert cw == [[2.0, 3.0], [0.0, 0.0]]
    g = average_featlog([[[0.125, 1.0]], [[0.0, 0.0]]], nclass=2, inner_loop=1)
    assert g[0] == [float(np.float32(0.06)), 0.5]  # 0.0625 → 0.06 (half to even), a float32 value
    with pytest.raises(ValueError):
        average_featlog([[], []], 2, 1)
