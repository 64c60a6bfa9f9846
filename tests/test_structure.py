"""The house's floors: imports point one way, down (search_spaces <- hypernet <- nas <- app), and no
two modules import each other, directly or through others (lazy imports inside functions count)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_spaces", "hypernet", "nas", "app")
# What each package may import from the project (besides itself).
ALLOWED = {"search_spaces": set(), "hypernet": {"search_spaces"}, "nas": {"search_spaces", "hypernet"},
           "app": {"search_spaces", "hypernet", "nas"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its body (resolved to the deepest known module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_packages_import_only_the_floors_below(graph):
    wrong = sorted(f"{m} imports {t}" for m, targets in graph.items() for t in targets
                   if t.split(".")[0] != m.split(".")[0] and t.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert not wrong, wrong


def test_no_import_cycles_between_modules(graph):
    """Tarjan's strongly connected components over module -> imported module; a package's
    `__init__` re-exporting its own submodules is not a cycle of two ideas, so edges from a package
    to its own submodules are left out."""
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The checks above can fail: an import inside a function and a relative import are both found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("import pkg.a\n")
    known = {"pkg", "pkg.a", "pkg.b"}
    assert _imports("pkg.a", pkg / "a.py", known) == {"pkg.b"}
    assert _imports("pkg.b", pkg / "b.py", known) == {"pkg.a"}


def test_architecture_md_lists_exactly_the_trial_and_study_attrs():
    from nas.attrs import STUDY_ATTRS, TRIAL_ATTRS

    text = (ROOT / "ARCHITECTURE.md").read_text()
    for heading, expected in (("Trial user attrs", TRIAL_ATTRS), ("Study user attrs", STUDY_ATTRS)):
        section = text.split(f"### {heading}", 1)[1].split("\n#", 1)[0]
        documented = re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.M)
        assert sorted(documented) == sorted(expected), heading
