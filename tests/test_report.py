import json

from evaluation.report import format_table, main, prefix_table


def rec(test_type, ipc, ipcy, best, last):
    res = {"convnet": {"best": {"mean": best, "std": 0.5}, "last": {"mean": last, "std": 0.1}}}
    return {"test_type": test_type, "args": {"ipc": ipc, "ipcy": ipcy, "epochs": 7}, "results": res}


def test_prefix_table_and_format(tmp_path, capsys):
    p = tmp_path / "r.json"
    p.write_text(json.dumps([rec("cx_cy", 3, 1, 40.0, 39.0), rec("cx_cy", 3, 2, 50.0, 49.0),
                             rec("other", 3, -1, 60.0, 58.0), rec("cx_cy", 3, 1, 41.0, 40.0)]))
    t = prefix_table(str(p))
    assert t == {1: (41.0, 0.5, 40.0, 7), 2: (50.0, 0.5, 49.0, 7), 3: (60.0, 0.5, 58.0, 7)}
    s = format_table({"MDC": t, "C": {1: (30.0, 0.0, 30.0, 7)}})
    assert "| IPC-1 | 41.00 ± 0.50 | 30.00 ± 0.00 |" in s and "| IPC-2 | 50.00 ± 0.50 | – |" in s
    assert main([f"MDC={p}"]) == 0 and "IPC-3" in capsys.readouterr().out
    assert main(["no-label"]) == 2
