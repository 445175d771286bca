"""The module graph (docs/DESIGN.md): dependencies point one way — scripts → domain packages
(condensation, reg_ipcx, evaluation, yoco) → data, models → utils → nothing of ours —, no cycles, no
module imports an entry-point script, no private name is imported across modules."""
import ast
import os
import subprocess
import sys

from conftest import ROOT

PACKAGES = ("utils", "cli", "training", "tracking", "sweep", "data", "models", "condensation", "evaluation", "yoco")
LIBRARY_TOP = ("reg_ipcx",)  # a library module at the top level: the reference's module name
# what each layer may import of ours (besides itself)
ALLOWED = {
    "utils": set(),
    # the command line reads the torch-free registries of the domains for its choices and help
    "cli": {"utils", "tracking", "condensation", "yoco"},
    # the torch-free MLS registry by its exact name (``condensation.mls``): the reader of the ``mls`` record
    "tracking": {"utils", "condensation.mls"},
    # sweep.precheck checks every job of a table before anything starts: each job's argv through its program's
    # parser (cli.arguments.parse_args) and the pre-work argument checks of its main (evaluation.sources,
    # condensation, yoco), imported inside its functions; the runners themselves import only utils
    "sweep": {"utils", "cli", "evaluation", "condensation", "yoco"},
    "training": {"utils", "cli"},
    "data": {"utils", "cli", "training"},
    "models": {"utils", "training"},
    "yoco": {"utils", "cli", "training", "tracking", "data", "models"},
    "evaluation": {"utils", "cli", "training", "tracking", "data", "models", "yoco", "condensation.mls"},
    "condensation": {"utils", "cli", "training", "tracking", "data", "models", "evaluation"},
    "reg_ipcx": {"utils", "condensation"},  # the reference's module name over condensation.mls
}


def entry_points():
    """Top-level scripts: ``*.py`` at the root that run ``main`` under ``__name__ == "__main__"``."""
    out = set()
    for name in os.listdir(ROOT):
        if name.endswith(".py") and name[:-3] not in LIBRARY_TOP:
            with open(os.path.join(ROOT, name)) as f:
                if '__name__ == "__main__"' in f.read():
                    out.add(name[:-3])
    return out


def library_modules():
    """Dotted name -> file of every module of the packages and the top-level library modules."""
    mods = {m: os.path.join(ROOT, m + ".py") for m in LIBRARY_TOP}
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].replace(os.sep, ".")
                    mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, f)
    return mods


def imports_of(name, path, known):
    """(imported module, imported names) of every import statement, function-level ones included."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    pkg = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            for n in names:  # ``from pkg import module``
                if f"{base}.{n}" in known:
                    out.append((f"{base}.{n}", ()))
            out.append((base, names))
    return out


def ours(mod, known, scripts):
    if mod in known or mod in scripts:
        return mod
    top = mod.split(".")[0]
    return mod if top in PACKAGES or top in LIBRARY_TOP else None


def graph():
    known, scripts = library_modules(), entry_points()
    edges = {}
    for name, path in known.items():
        edges[name] = [(m, names) for m, names in imports_of(name, path, known) if ours(m, known, scripts)]
    return known, scripts, edges


def test_no_module_imports_an_entry_point_script():
    known, scripts, edges = graph()
    assert {"test", "condense_reg", "condense_reg_mp", "condense", "get_training_dynamics",
            "generate_importance_score"} <= scripts
    bad = [(n, m) for n, es in edges.items() for m, _ in es if m in scripts]
    assert not bad, f"library modules importing entry-point scripts: {bad}"


def test_dependencies_point_one_way():
    _, _, edges = graph()
    bad = []
    for n, es in edges.items():
        layer = n.split(".")[0]
        for m, _ in es:
            target = m.split(".")[0]
            if target != layer and target not in ALLOWED[layer] and m not in ALLOWED[layer]:
                bad.append(f"{n} -> {m}")
    assert not bad, "imports against the layering of docs/DESIGN.md: " + ", ".join(bad)


def test_no_import_cycles():
    known, _, edges = graph()
    adj = {n: sorted({m for m, _ in es if m in known and m != n}) for n, es in edges.items()}
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in adj[n]:
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(adj):
        if n not in state:
            visit(n)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_imported_across_modules():
    _, _, edges = graph()
    bad = [(n, m, x) for n, es in edges.items() for m, names in es for x in names
           if x.startswith("_") and m != n]
    assert not bad, f"private names imported from other modules: {bad}"


def test_every_module_imports_alone_without_loading_a_script():
    """Import each library module in turn in one fresh interpreter; after each, no entry-point script
    may have been loaded (catches imports the static walk cannot see)."""
    known, scripts, _ = graph()
    code = (
        "import importlib, sys\n"
        f"scripts = {sorted(scripts)!r}\n"
        f"for m in {sorted(known)!r}:\n"
        "    importlib.import_module(m)\n"
        "    hit = [s for s in scripts if s in sys.modules]\n"
        "    assert not hit, (m, hit)\n"
        "print('ok', len(sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]


def test_no_test_module_imports_another():
    """Test modules share code through tests/helpers.py (plain functions), tests/conftest.py (fixtures),
    tests/fakedata.py and tests/slurm_cluster.py, never by importing each other: importing a test module runs its
    module-level code and, under pytest, can collect its tests twice or hide a dependency between two tiers."""
    tests = os.path.join(ROOT, "tests")
    modules = {name[:-3] for name in os.listdir(tests) if name.startswith("test_") and name.endswith(".py")}
    bad = []
    for name in sorted(n[:-3] for n in os.listdir(tests) if n.endswith(".py")):  # helpers and conftest too
        with open(os.path.join(tests, name + ".py")) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):  # module level and inside functions alike
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            bad += [(name, node.lineno, m) for m in names if m.lstrip(".").split(".")[0] in modules]
    assert not bad, f"test modules imported by modules of tests/ (move what they share to tests/helpers.py): {bad}"
