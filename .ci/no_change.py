#!/usr/bin/env python3
"""Proof of no change (issue 32 item 6): the same short runs of the top-level scripts on two code trees give
the same files.

    python3 .ci/no_change.py run CODE_ROOT OUT_DIR     # the runs of runs() with CODE_ROOT's scripts (~3-6 min, 1 core)
    python3 .ci/no_change.py compare OUT_A OUT_B       # exit 0: identical; 1: the differences are printed

A restructuring is checked with a tree at the commit before it (``git worktree add ../before HEAD~1``):

    python3 .ci/no_change.py run ../before /tmp/nc_a && python3 .ci/no_change.py run . /tmp/nc_b \\
      && python3 .ci/no_change.py compare /tmp/nc_a /tmp/nc_b

``run`` only uses the scripts' command lines (condense_reg.py, condense.py, test.py, get_training_dynamics.py,
generate_importance_score.py), each as a subprocess with ``cwd=OUT_DIR``, ``PYTHONPATH=CODE_ROOT``,
``OMP_NUM_THREADS=1``, ``TQDM_DISABLE=1``, ``--device cpu`` and ``--deterministic True`` where the script has
it; every path on the command lines is relative to OUT_DIR, so two output folders hold the same arguments.
The data: a fake CIFAR-10 (tests/fakedata.py ``make_cifar`` of CODE_ROOT, 300 train / 100 test images).

``compare`` checks, for the union of both folders' files (a file missing on one side is a difference):
  * ``data_*.pt``, every other ``*.pt`` / ``*.pickle`` (checkpoints with their RNG states, dynamics logs,
    score files, exported subsets) and ``regularizer_*.json``: byte for byte; a plain pickle holding torch
    tensors (YOCO's ``td-ipc*.pickle``, ``data-score-*.pickle``) never is, even between two runs of one tree
    (each tensor's storage key is its memory address), so when its bytes differ it is read with the standard
    library (``StubUnpickler``) and compared by value: every storage's raw bytes, dtype, size and stride;
  * ``metrics.jsonl``: line by line, each line as JSON without its wall-time keys (``seconds``, ``sec_per_it``);
  * ``test_results*.json`` and other ``*.json``: as JSON without wall-time / per-invocation keys (numbers under
    ``time``, ``wall_seconds``, ``seconds``; a clock-time ``time``; ``run_id``: a random uuid; test.py's
    boolean setting ``time`` is kept), OUT_DIR and CODE_ROOT in strings replaced by placeholders;
  * the exit status of every run;
and reports as notes only (not in the exit status) ``args.yaml`` (paths normalised), ``*.png`` and the text
logs with their clock times removed. Skipped: ``.lock`` (host, pid, start time), the harness's own folder
``_harness/`` and the input data ``data/``.

Standard library only: the harness never imports torch or the project.
"""
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time

HARNESS = "_harness"
SAME_BY_VALUE = []  # pickles equal by value but not byte for byte (tensor storage keys: see load_storage_bytes)
DATA = "data"
WALL_KEYS = {"seconds", "sec_per_it", "time", "wall_seconds", "run_id", "elapsed", "wall"}
STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")

# ---------------------------------------------------------------------------------------------------------
# the runs

MDC = ["-d", "cifar10", "--data_dir", DATA, "--device", "cpu", "--width", "0.125", "--niter", "1",
       "--inner_loop", "5", "--n_data", "16", "--batch_real", "8", "--ipc", "4", "-f", "2", "--eval_during", "False",
       "--deterministic", "True"]
MDC_ON = MDC + ["--adaptive_reg", "True", "--adaptive_period", "1"]
EVAL = ["--device", "cpu", "--deterministic", "True", "--data_dir", DATA, "--epochs", "2", "--batch_size", "32",
        "--repeat", "1"]
YOCO_F, YOCO_T = 2, 1  # the IDC set condensed by condense.py: IPC_F 2 (f = 2), pruned to IPC_T 1
PRUNING_KEYS = [  # (folder, key, extra flags)
    ("yoco", "yoco", []), ("yoco_imbalance", "yoco_imbalance", []), ("random", "random", []),
    ("random_balance", "random_balance", []), ("ssp", "ssp", []), ("ssp_balance", "ssp_balance", []),
    ("entropy", "entropy", []), ("entropy_easy_balance", "entropy_easy_balance", []),
    ("accumulated_margin", "accumulated_margin", []), ("accumulated_margin_easy", "accumulated_margin_easy", []),
    ("forgetting_balance_easy", "forgetting_balance_easy", []), ("el2n", "el2n", []),
    ("el2n_hard_balance", "el2n_hard_balance", []),
    ("ccs", "ccs", ["--prune_score_ratio", "0.3"]), ("ccs_2", "ccs", ["--ccs_type", "ccs_2"]),
]


def runs():
    """[(name, script, args)] in order (later runs read earlier runs' folders)."""
    out = []
    for sel in ("change", "distance", "random"):  # each --mls_select with the default --mls_metric (feature)
        out.append((f"mdc_select_{sel}", "condense_reg.py",
                    MDC_ON + ["--mls_select", sel, "--stop_after", "4", "--save_dir", f"mdc_select_{sel}"]))
    for met in ("gradient", "accuracy"):  # each other --mls_metric with the default --mls_select (change)
        out.append((f"mdc_metric_{met}", "condense_reg.py",
                    MDC_ON + ["--mls_metric", met, "--stop_after", "4", "--save_dir", f"mdc_metric_{met}"]))
    out.append(("mdc_nofreeze", "condense_reg.py",
                MDC_ON + ["--mls_freeze", "False", "--stop_after", "4", "--save_dir", "mdc_nofreeze"]))
    out.append(("mdc_classwise", "condense_reg.py",
                MDC_ON + ["--adaptive_class_wise", "--stop_after", "4", "--save_dir", "mdc_classwise"]))
    # an interrupted MDC run continued with --resume (the checkpoint's RNG states, sampler and regularizers)
    out.append(("mdc_resume_part1", "condense_reg.py", MDC_ON + ["--stop_after", "2", "--save_dir", "mdc_resume"]))
    out.append(("mdc_resume_part2", "condense_reg.py",
                MDC_ON + ["--stop_after", "5", "--resume", "--save_dir", "mdc_resume"]))
    # Baseline C: the same loop without --adaptive_reg, to the end (20 outer iterations: the last save point)
    out.append(("baseline_c", "condense_reg.py", MDC + ["--save_dir", "baseline_c"]))
    # prefix evaluations (test.py --test_type cx_cy), results next to the evaluated file by default
    for name, src in (("test_cxcy_mdc", "mdc_select_change/data_4.pt"), ("test_cxcy_baseline_c", "baseline_c")):
        out.append((name, "test.py", ["-d", "cifar10", "-f", "2", "--ipc", "4", "--ipcy", "2", "--test_type",
                                      "cx_cy", "--test_data_dir", src, "--save_subset", f"subsets/{name}.pt", *EVAL]))
    # YOCO: IDC set (condense.py) -> dynamics -> scores -> pruned evaluations
    out.append(("idc_condense", "condense.py",
                ["-d", "cifar10", "--data_dir", DATA, "--device", "cpu", "--width", "0.125", "--niter", "1",
                 "--inner_loop", "5", "--n_data", "16", "--batch_real", "8", "--ipc", str(YOCO_F), "-f", "2",
                 "--eval_during", "False", "--deterministic", "True", "--stop_after", "4", "--save_dir", "idc"]))
    yoco = ["-d", "cifar10", "--custom-data-dir", "idc", "--base-dir", "yoco_dyn", "--device", "cpu"]
    out.append(("yoco_dynamics", "get_training_dynamics.py", yoco + ["--epochs", "3", "--data-dir", DATA]))
    out.append(("yoco_scores", "generate_importance_score.py", yoco + ["--stop_epoch", "3", "--topk", "2"]))
    score = f"yoco_dyn/ipc{YOCO_F}/data-score-ipc{YOCO_F}-ep3.pickle"
    for folder, key, extra in PRUNING_KEYS:
        out.append((f"yoco_test_{folder}", "test.py",
                    ["-d", "cifar10", "--ipc", str(YOCO_F), "--slct_ipc", str(YOCO_T), "--test_data_dir", "idc",
                     "--score_file", score, "--pruning_key", key, *extra, "--topk", "2", "--no_resnet",
                     "--results_file", f"yoco_test/{folder}/test_results.json",
                     "--save_subset", f"yoco_test/{folder}/subset.pt", *EVAL]))
    return out


def make_data(code_root, out_dir):
    """The fake CIFAR-10 of CODE_ROOT's tests/fakedata.py, in a subprocess (it needs numpy)."""
    code = ("import importlib.util, sys\n"
            "s = importlib.util.spec_from_file_location('fakedata', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
            "m.make_cifar(sys.argv[2], 10, n_train=300, n_test=100)\n")
    subprocess.run([sys.executable, "-c", code, os.path.join(code_root, "tests", "fakedata.py"), DATA],
                   cwd=out_dir, env=script_env(code_root), check=True)


def script_env(code_root):
    env = dict(os.environ, PYTHONPATH=code_root, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    return env


def cmd_run(code_root, out_dir):
    code_root, out_dir = os.path.abspath(code_root), os.path.abspath(out_dir)
    if not os.path.isfile(os.path.join(code_root, "condense_reg.py")):
        sys.exit(f"error: {code_root} has no condense_reg.py")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, HARNESS, "meta.json")):
            sys.exit(f"error: {out_dir} is not empty and not a no_change.py output folder")
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, HARNESS, "logs"))
    t_all = time.time()
    make_data(code_root, out_dir)
    env, status = script_env(code_root), []
    for name, script, args in runs():
        t0 = time.time()
        with open(os.path.join(out_dir, HARNESS, "logs", name + ".out"), "w") as log:
            p = subprocess.run([sys.executable, os.path.join(code_root, script), *args], cwd=out_dir, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
        dt = time.time() - t0
        status.append({"name": name, "script": script, "args": args, "rc": p.returncode, "seconds": round(dt, 1)})
        print(f"{name:32s} {script:30s} rc {p.returncode}  {dt:6.1f} s", flush=True)
        if p.returncode != 0:
            print(f"  see {os.path.join(out_dir, HARNESS, 'logs', name + '.out')}", flush=True)
    total = time.time() - t_all
    with open(os.path.join(out_dir, HARNESS, "meta.json"), "w") as f:
        json.dump({"code_root": code_root, "out_dir": out_dir, "python": sys.executable, "seconds": round(total, 1),
                   "runs": status}, f, indent=1)
    failed = [s["name"] for s in status if s["rc"] != 0]
    print(f"{len(status)} runs in {total:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------------------
# the comparison

STRICT_KINDS = ["data_*.pt", "other *.pt/*.pickle", "regularizer_*.json", "metrics.jsonl", "test_results*.json",
                "other *.json"]
NOTE_KINDS = ["args.yaml", "*.png", "logs (clock times removed)", "other files"]
CLOCK = re.compile(r"\[\d\d:\d\d:\d\d\]|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|\(?\b\d+(\.\d+)?\s*s\b\)?|in \d+s")


def kind_of(rel):
    base = os.path.basename(rel)
    if base == ".lock" or base.endswith(".partial"):
        return None
    if re.fullmatch(r"data_\d+\.pt", base):
        return "data_*.pt"
    if base.endswith((".pt", ".pickle", ".pkl", ".pth")):
        return "other *.pt/*.pickle"
    if re.fullmatch(r"regularizer_\d+\.json", base):
        return "regularizer_*.json"
    if base == "metrics.jsonl":
        return "metrics.jsonl"
    if re.fullmatch(r"test_results.*\.json", base):
        return "test_results*.json"
    if base.endswith(".json"):
        return "other *.json"
    if base == "args.yaml":
        return "args.yaml"
    if base.endswith(".png"):
        return "*.png"
    if base.endswith((".txt", ".log")):
        return "logs (clock times removed)"
    return "other files"


def walk(root):
    files = {}
    for d, subdirs, names in os.walk(root):
        rel_d = os.path.relpath(d, root)
        if rel_d == ".":
            subdirs[:] = [s for s in subdirs if s not in (HARNESS, DATA)]
        for n in names:
            rel = os.path.normpath(os.path.join(rel_d, n))
            k = kind_of(rel)
            if k is not None:
                files[rel] = k
    return files


def meta(root):
    with open(os.path.join(root, HARNESS, "meta.json")) as f:
        return json.load(f)


def normaliser(m):
    """Strings with the run's absolute folders replaced by placeholders."""
    subs = [(m["out_dir"], "<OUT_DIR>"), (m["code_root"], "<CODE_ROOT>")]

    def fix(s):
        for a, b in subs:
            s = s.replace(a, b)
        return s
    return fix


def is_wall(k, v):
    """A wall-time or per-invocation entry: a number of seconds, a clock time or a random run id under one of
    WALL_KEYS (a setting of the same name, e.g. test.py's boolean ``--time``, is kept)."""
    if k not in WALL_KEYS or isinstance(v, bool):
        return False
    return isinstance(v, (int, float)) or (isinstance(v, str) and (k == "run_id" or STAMP.fullmatch(v) is not None))


def strip(obj, fix):
    if isinstance(obj, dict):
        return {k: strip(v, fix) for k, v in obj.items() if not is_wall(k, v)}
    if isinstance(obj, list):
        return [strip(v, fix) for v in obj]
    if isinstance(obj, str):
        return fix(obj)
    return obj


def first_diff(a, b, path="$"):
    """Where two JSON values first differ (a short text)."""
    if type(a) is not type(b):
        return f"{path}: {a!r:.80} vs {b!r:.80}"
    if isinstance(a, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'A' if k in a else 'B'}"
            d = first_diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r:.80} vs {b!r:.80}"


# ---- pickles of torch tensors without torch -------------------------------------------------------------
# A torch tensor in a plain pickle (the reference's dynamics and score pickles) is
# ``torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(b), offset, size, stride, ...)`` where ``b``
# is a legacy ``torch.save`` stream whose storage key is the storage's memory address: the same tensor gives
# different bytes in two processes. Such a pickle is compared as the structure below, read with the standard
# library only: every torch (or other non-builtin) global is a ``Stub``, every call of one a ``Call``, and a
# storage is (its persistent id with the key replaced by its position, its raw bytes).


class Stub:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        if self.name == "torch.storage._load_from_bytes":
            return load_storage_bytes(args[0])
        return Call(self.name, args)

    def __eq__(self, other):
        return isinstance(other, Stub) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return self.name


class Call:
    def __init__(self, name, args):
        self.name, self.args, self.state = name, args, None

    def __setstate__(self, state):
        self.state = state

    def __eq__(self, other):
        return isinstance(other, Call) and (self.name, self.args, self.state) == (other.name, other.args, other.state)

    def __repr__(self):
        return f"{self.name}{self.args!r:.60}"


class StubUnpickler(pickle.Unpickler):
    def __init__(self, f, keys=None):
        super().__init__(f)
        self.keys = keys

    def find_class(self, module, name):
        if module == "builtins" or (module, name) == ("collections", "OrderedDict"):
            return super().find_class(module, name)
        return Stub(f"{module}.{name}")

    def persistent_load(self, pid):
        if self.keys is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        pid = list(pid)
        if len(pid) > 2 and isinstance(pid[2], str):  # ('storage', type, key, location, numel, view)
            pid[2] = self.keys.setdefault(pid[2], len(self.keys))
        return ("persistent", tuple(pid))


def load_storage_bytes(b):
    """A legacy torch.save stream (magic, protocol, sys_info, object, storage keys, raw data) as a comparable
    tuple in which the storage keys are their order of appearance."""
    f, keys = io.BytesIO(b), {}
    head = [StubUnpickler(f).load() for _ in range(3)]
    obj = StubUnpickler(f, keys).load()
    order = [keys.setdefault(k, len(keys)) for k in StubUnpickler(f).load()]
    return ("storage", head, obj, order, f.read())


def same_pickle(pa, pb):
    """Whether two pickles hold the same values (torch storages by content); None when one cannot be read."""
    try:
        with open(pa, "rb") as fa, open(pb, "rb") as fb:
            return StubUnpickler(fa).load() == StubUnpickler(fb).load()
    except Exception:  # noqa: BLE001 - not a pickle this reader understands: bytes decide
        return None


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def compare_file(kind, pa, pb, fix_a, fix_b):
    """None when equal, else a short reason."""
    if kind in ("data_*.pt", "other *.pt/*.pickle", "regularizer_*.json", "*.png", "other files"):
        a, b = read(pa), read(pb)
        if a == b:
            return None
        if pa.endswith((".pickle", ".pkl")) and same_pickle(pa, pb):
            SAME_BY_VALUE.append(pa)
            return None
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"bytes differ ({len(a)} vs {len(b)} bytes, first at offset {n})"
    if kind == "metrics.jsonl":
        la, lb = read(pa, "r").splitlines(), read(pb, "r").splitlines()
        if len(la) != len(lb):
            return f"{len(la)} vs {len(lb)} lines"
        for i, (x, y) in enumerate(zip(la, lb)):
            d = first_diff(strip(json.loads(x), fix_a), strip(json.loads(y), fix_b))
            if d:
                return f"line {i + 1}: {d}"
        return None
    if kind in ("test_results*.json", "other *.json"):
        return first_diff(strip(json.loads(read(pa, "r")), fix_a), strip(json.loads(read(pb, "r")), fix_b))
    if kind == "args.yaml":
        a, b = fix_a(read(pa, "r")), fix_b(read(pb, "r"))
    else:  # logs
        a, b = CLOCK.sub("<t>", fix_a(read(pa, "r"))), CLOCK.sub("<t>", fix_b(read(pb, "r")))
    if a == b:
        return None
    la, lb = a.splitlines(), b.splitlines()
    i = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
    return f"line {i + 1}: {la[i] if i < len(la) else '<end>'!r:.100} vs {lb[i] if i < len(lb) else '<end>'!r:.100}"


def cmd_compare(a, b):
    ma, mb = meta(a), meta(b)
    fix_a, fix_b = normaliser(ma), normaliser(mb)
    fa, fb = walk(a), walk(b)
    diffs, notes, counts = [], [], {}
    # the runs themselves: same list, same exit status
    ra = [(r["name"], r["rc"]) for r in ma["runs"]]
    rb = [(r["name"], r["rc"]) for r in mb["runs"]]
    if ra != rb:
        diffs.append(("runs", "_harness/meta.json", f"run status differs: {[x for x in ra if x not in rb]} vs "
                                                    f"{[x for x in rb if x not in ra]}"))
    for rel in sorted(set(fa) | set(fb)):
        kind = fa.get(rel) or fb.get(rel)
        bucket = diffs if kind in STRICT_KINDS else notes
        c = counts.setdefault(kind, [0, 0])
        c[0] += 1
        if rel not in fa or rel not in fb:
            bucket.append((kind, rel, f"only in {'A' if rel in fa else 'B'}"))
            continue
        why = compare_file(kind, os.path.join(a, rel), os.path.join(b, rel), fix_a, fix_b)
        if why:
            bucket.append((kind, rel, why))
        else:
            c[1] += 1
    print(f"A: {a} (code {ma['code_root']}, {ma['seconds']} s)\nB: {b} (code {mb['code_root']}, {mb['seconds']} s)")
    print(f"runs: {len(ra)} vs {len(rb)}, failed: {sum(rc != 0 for _, rc in ra)} vs {sum(rc != 0 for _, rc in rb)}")
    for kind in STRICT_KINDS + NOTE_KINDS:
        if kind in counts:
            n, same = counts[kind]
            tag = "" if kind in STRICT_KINDS else "  (note only)"
            print(f"{kind:28s} {n:4d} files, {same:4d} identical, {n - same:4d} differ{tag}")
    for title, items in (("DIFFERENCES", diffs), ("notes (not counted)", notes)):
        if items:
            print(f"{title}:")
            for kind, rel, why in items:
                print(f"  [{kind}] {rel}: {why}")
    if SAME_BY_VALUE:
        print(f"{len(SAME_BY_VALUE)} pickles equal by value, not byte for byte (torch storage keys are memory "
              "addresses): " + ", ".join(os.path.relpath(p, a) for p in SAME_BY_VALUE))
    n_strict = sum(counts[k][0] for k in STRICT_KINDS if k in counts)
    if diffs:
        print(f"different: {len(diffs)} of {n_strict} files")
        return 1
    print(f"identical: {n_strict} files")
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "run":
        return cmd_run(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "compare":
        return cmd_compare(argv[1], argv[2])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
