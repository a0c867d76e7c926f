"""The package layers of cryohet: no import goes up, and there are no cycles.

Every module under ``src/cryohet`` is parsed (not imported); every import of a cryohet
module counts, also inside functions (a lazy import is still a dependency), except under
``if TYPE_CHECKING:``. A package may import its own level or lower ones. A new package
fails this test until it is given a place in :data:`LAYERS` (and in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cryohet"

#: Bottom up. Top-level modules (errors, config, console, device) and the bundled data
#: (resources) are the core, level 0.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "config", "console", "device", "lazy", "resources"),
    ("io", "geometry", "networks"),
    ("imaging",),
    ("metrics", "data", "representations"),
    ("training",),
    ("latents", "pose"),
    ("reconstruction", "simulate"),
    ("methods",),
    ("evaluation", "analysis"),
    ("workflows",),
    ("cli",),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
EXEMPT = {"__init__", "__main__"}  # the package root (version) and `python -m cryohet` (-> cli)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def _imports() -> dict[str, set[str]]:
    """Module -> the cryohet modules it imports (``from pkg import name`` counts ``pkg.name``
    when that is a module, else ``pkg``)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("cryohet"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("cryohet"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in modules else target)
        deps.discard(name)
        out[name] = {d for d in deps if d in modules}
    return out


def _unit(module: str) -> str:
    """The layer unit of a module: ``cryohet.imaging.fft`` -> ``imaging``; ``cryohet.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_every_package_has_a_layer():
    units = {_unit(m) for m in _imports()} - EXEMPT
    unknown = sorted(units - set(LEVEL))
    assert not unknown, f"packages without a layer (add them to LAYERS and docs/ARCHITECTURE.md): {unknown}"


def test_no_import_goes_up():
    bad = []
    for module, deps in _imports().items():
        src = _unit(module)
        if src in EXEMPT:
            continue
        for dep in deps:
            dst = _unit(dep)
            if dst not in EXEMPT and LEVEL[dst] > LEVEL[src]:
                bad.append(f"{module} imports {dep} ({src} is level {LEVEL[src]}, {dst} is level {LEVEL[dst]})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, deps in _imports().items():
        src = _unit(module)
        if src in EXEMPT:
            continue
        graph.setdefault(src, set()).update(_unit(d) for d in deps if _unit(d) not in EXEMPT | {src})
    cycle = _find_cycle(graph)
    assert cycle is None, "package cycle: " + " -> ".join(cycle)


def test_no_cycle_between_modules():
    graph = {m: {d for d in deps if not d.endswith(("__init__",))} for m, deps in _imports().items()}
    # a package's __init__ re-exporting its modules is not a dependency of those modules on each other
    packages = {m for m in graph if (SRC.parent / Path(*m.split(".")) / "__init__.py").exists()}
    graph = {m: deps - packages for m, deps in graph.items() if m not in packages}
    cycle = _find_cycle(graph)
    assert cycle is None, "module cycle: " + " -> ".join(cycle)


def test_metrics_are_pure_numbers():
    """metrics/ reads and writes no files and draws nothing (evaluation/ does that)."""
    forbidden = ("cryohet.io", "matplotlib", "mrcfile", "starfile", "gemmi", "cryohet.console")
    bad = []
    for path in sorted((SRC / "metrics").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                names = [f"cryohet.{mod.lstrip('.')}" if node.level >= 2 else mod]
            for name in names:
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.name}:{node.lineno} imports {name}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "np.save", "open"):
                bad.append(f"{path.name}:{node.lineno} calls {ast.unparse(node.func)}")
    assert not bad, "metrics must be pure numbers:\n" + "\n".join(bad)
