"""No import circle between rrpo's modules.

The graph is read from the source with ``ast`` (nothing is imported): every ``import``/``from ...
import`` statement counts, at module level or inside a function (a function-local import hides a
circle from Python but not from a reader), relative imports are resolved, ``from pkg import mod``
counts as an import of the submodule, and the ``rrpo`` dispatcher's dynamic imports of the verb
modules (``rrpo.cli.VERB_MODULES``) are edges too. Importing a submodule is not counted as an
import of its parent package (every package would otherwise import itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import rrpo
import rrpo.cli

SRC = Path(rrpo.__file__).resolve().parent


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package folder ``root``."""
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name`` (file ``path``) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                if f"{mod}.{a.name}" in known:
                    found.add(f"{mod}.{a.name}")
                elif mod in known:
                    found.add(mod)
    found.discard(name)
    return found


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    files = module_files(root)
    graph = {m: imports_of(m, p, set(files)) for m, p in files.items()}
    graph["rrpo.cli"] |= set(rrpo.cli.VERB_MODULES)  # importlib.import_module over this tuple
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle as one closed path ``[a, b, ..., a]``: one per strongly connected component of
    more than one module (or a module importing itself), found with Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_in(graph, comp) for comp in components]


def _path_in(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """The shortest closed path through the component from its first module back to it (breadth first)."""
    start, members = comp[0], set(comp)
    prev: dict[str, str] = {}
    queue, seen = [start], {start}
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    raise AssertionError(f"no circle through {comp}")


def test_cycle_finder_on_a_hand_built_graph():
    """a→b→c→a is one circle, d→e→d another, f imports itself; g→a and c→h join no circle."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "h"}, "d": {"e"}, "e": {"d"}, "f": {"f"}, "g": {"a"}, "h": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "e", "d"], ["f", "f"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_graph_reader_counts_local_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from p.sub import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from .. import top\n")
    (pkg / "top.py").write_text("import os\nfrom p.sub.leaf import f\n")
    files = module_files(pkg)
    graph = {m: imports_of(m, p, set(files)) for m, p in files.items()}
    assert graph == {"p": set(), "p.sub": {"p.sub.leaf"}, "p.sub.leaf": {"p.top"}, "p.top": {"p.sub.leaf"}}
    assert find_cycles(graph) == [["p.sub.leaf", "p.top", "p.sub.leaf"]]


def test_no_import_circle_between_rrpo_modules():
    graph = import_graph()
    assert {"rrpo.cli", "rrpo.optimize.trainer", "rrpo.audit.overopt"} <= set(graph)
    cycles = find_cycles(graph)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_trainer_does_not_import_the_audit_and_audit_report_do_not_import_optimize_configs():
    graph = import_graph()
    assert not any(m.startswith("rrpo.audit") for m in graph["rrpo.optimize.trainer"])
    for m in (
        "rrpo.audit.overopt",
        "rrpo.audit.scorer",
        "rrpo.report.build",
        "rrpo.report.commands",
        "rrpo.audit.commands",
    ):
        assert "rrpo.optimize.trainer" not in graph[m], m
    assert not any(m.endswith(".commands") or m == "rrpo.cli" for m in graph["rrpo.audit.scorer"])


#: The verb layer: modules that compose the libraries into commands (they may import any package).
VERB_LAYER = ("rrpo.cli", "rrpo.args", "rrpo.stages", "rrpo.demo", "rrpo.experiment")


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Imports between rrpo's top-level packages (``rrpo.audit``, ``rrpo.optimize``, ...), leaving out
    the verb layer (``*.commands`` and :data:`VERB_LAYER`)."""

    def top(m):
        return ".".join(m.split(".")[:2])

    def verb(m):
        return m.endswith(".commands") or m in VERB_LAYER

    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        if not verb(m):
            out.setdefault(top(m), set()).update(top(d) for d in deps if not verb(d) and top(d) != top(m))
    return out


def test_packages_below_the_verbs_form_layers():
    """Below the verbs the packages import one way only (data < codec < reward, policy < optimize <
    audit < report): e.g. the judge watch, which scores with rrpo.audit, is composed in
    rrpo.optimize.commands, so rrpo.optimize itself never imports rrpo.audit."""
    pg = package_graph(import_graph())
    assert not find_cycles(pg), find_cycles(pg)
    assert "rrpo.audit" not in pg["rrpo.optimize"] and "rrpo.optimize" in pg["rrpo.audit"]
    assert not pg["rrpo.data"] & {"rrpo.codec", "rrpo.reward", "rrpo.policy", "rrpo.optimize", "rrpo.audit"}
