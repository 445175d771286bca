"""MDC regulariser: MLS selection, freezing timeline and state round trip (spec mdc §9.3, §9.4)."""
import json

import pytest

from reg_ipcx import Regularizer, average_featlog, is_window, subset_prefix_sizes, check_mdc_args
from utils.errors import UserError

P = 100
IPC = 6  # subsets x = 1..5


def _dvec(peak_x=None, base=1.0, bump=0.0):
    """A d-vector (x = 1..IPC-1) equal to ``base`` except ``base + bump`` at ``peak_x``."""
    return [base + (bump if x == peak_x else 0.0) for x in range(1, IPC)]


def _run_schedule(n_iter, window_vectors, nclass=2, inner_loop=3, class_wise=False):
    """Driver-like loop (spec mdc §8.6): per-class update_status/get_freeze_ipc every inner step,
    feature logging in windows, selection at it = t+1. Returns freeze/MLS per t and selections."""
    regs = [Regularizer(IPC, P) for _ in range(nclass)]
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
    """Spec mdc §9.4 example: MLS 1 -> 3 -> 5 -> 2 selected at it = 1, 100, 200, 300."""
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


def test_tie_rule_smallest_x_and_float_noise():
    r = Regularizer(IPC, P)
    r.select_reg_ipc([1.23, 1.50, 2.00, 1.50, 0.70], 1)
    # |1.23-1.21| and |1.50-1.48| are equal decimals but differ in binary float noise
    mls = r.select_reg_ipc([1.21, 1.48, 2.00, 1.50, 0.70], 100)
    assert mls == 1 and r.last_delta == [0.02, 0.02, 0.0, 0.0, 0.0]
    mls = r.select_reg_ipc([1.21, 1.58, 2.00, 1.60, 0.70], 200)   # tie between x=2 and x=4
    assert mls == 2 and r.regularized() == [2]
    with pytest.raises(ValueError):
        r.select_reg_ipc([1.0, 2.0], 300)


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
    assert g[0] == [round(0.0625, 2), 0.5]
    with pytest.raises(ValueError):
        average_featlog([[], []], 2, 1)
