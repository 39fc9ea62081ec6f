"""The package's import layers: one direction, no cycles, Dagster's public API only.

Every module of ``alphapulse_assets`` is parsed with ``ast``; every import counts, at module top, inside a
function or under ``if TYPE_CHECKING``. A module belongs to the longest entry of ``LAYERS`` that prefixes
its name; a module may import its own layer or any layer below it, never one above.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = "alphapulse_assets"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Lowest first. Entries on one line are one layer: they may import each other, but not in a cycle.
LAYERS: list[list[str]] = [
    # the error taxonomy every layer raises, and the platform tables' migrations (Alembic runs them by path)
    ["alphapulse_assets.recovery.errors", "alphapulse_assets.migrations"],
    [
        "alphapulse_assets.settings",
        "alphapulse_assets.platform_db",
        "alphapulse_assets.atomic_files",
        "alphapulse_assets.text_tables",
        "alphapulse_assets.store_fs",  # the filesystem behind a store URL, with the settings' options
        "alphapulse_assets.dagster_previews",  # the beta/preview Dagster features relied on, and their warnings
    ],
    ["alphapulse_assets.alerting"],  # alert types, the router, its channels and store
    ["alphapulse_assets.recovery"],  # breakers, retry policies, gating
    ["alphapulse_assets.features"],
    ["alphapulse_assets.market_data"],
    ["alphapulse_assets.training"],
    ["alphapulse_assets.serving"],  # the champions' answers: reads the registry and the candles, trains nothing
    ["alphapulse_assets.monitoring"],  # reads every layer below to report on it
    # executors: the executor definitions.py uses; celery_app: the Celery workers' app, built on the same settings
    [
        "alphapulse_assets.definitions",
        "alphapulse_assets.config_check",
        "alphapulse_assets.executors",
        "alphapulse_assets.celery_app",
    ],
    ["alphapulse_assets.cli"],
]
# Modules that import the package's modules inside functions by design (the reason is in the module).
LAZY_BY_DESIGN = {"alphapulse_assets.cli": "settings are read after _prepare_home; --help stays fast"}
# Packages whose modules must not import each other in a cycle (modules, not just packages).
MODULE_ACYCLIC = ["alphapulse_assets.alerting", "alphapulse_assets.monitoring", "alphapulse_assets.recovery"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> list[tuple[str, str, str, int]]:
    """(importing module, imported module, file, line) for every import of a module of the package."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                # `from pkg import mod` imports the module pkg.mod when there is one
                targets = [
                    f"{base_name}.{a.name}" if _is_module(f"{base_name}.{a.name}") else base_name for a in node.names
                ]
            else:
                continue
            rel = str(path.relative_to(ROOT.parent))
            out.extend(
                (module, t, rel, node.lineno) for t in set(targets) if t == PACKAGE or t.startswith(PACKAGE + ".")
            )
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT.parent / rel.with_suffix(".py")).exists() or (ROOT.parent / rel / "__init__.py").exists()


def _unit(module: str) -> tuple[int, str] | None:
    """(layer index, entry) of the longest LAYERS entry that is the module or a package above it."""
    best = None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (i, entry)
    return best


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _where(imports, pairs: set[tuple[str, str]], key) -> str:
    return "\n".join(
        f"  {f}:{line}: {src} imports {dst}" for src, dst, f, line in imports if (key(src), key(dst)) in pairs
    )


def test_every_module_is_in_a_layer():
    missing = sorted({m for m, _, _, _ in _imports()} - {m for m, _, _, _ in _imports() if _unit(m)})
    missing += [
        _module_name(p)
        for p in ROOT.rglob("*.py")
        if _unit(_module_name(p)) is None and _module_name(p) != PACKAGE and _module_name(p) not in missing
    ]
    assert not missing, f"modules in no layer of LAYERS: {missing}"


def test_imports_flow_downwards():
    imports = _imports()
    upward = [
        (src, dst, f, line)
        for src, dst, f, line in imports
        if _unit(src) and _unit(dst) and _unit(dst)[0] > _unit(src)[0]
    ]
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(
        f"  {f}:{line}: {src} ({_unit(src)[1]}) imports {dst} ({_unit(dst)[1]})" for src, dst, f, line in upward
    )


def test_no_cycles_between_packages():
    imports = _imports()
    edges: dict[str, set[str]] = defaultdict(set)
    for src, dst, _, _ in imports:
        a, b = _unit(src), _unit(dst)
        if a and b and a[1] != b[1]:
            edges[a[1]].add(b[1])
    cycles = _cycles(edges)
    assert not cycles, "\n".join(
        f"import cycle between {c}:\n"
        + _where(imports, {(x, y) for x in c for y in c if x != y}, lambda m: _unit(m)[1] if _unit(m) else m)
        for c in cycles
    )


def test_no_cycles_between_modules_of_a_package():
    imports = _imports()
    edges: dict[str, set[str]] = defaultdict(set)
    for src, dst, _, _ in imports:
        if src != dst and any(src.startswith(p + ".") and dst.startswith(p + ".") for p in MODULE_ACYCLIC):
            edges[src].add(dst)
    cycles = _cycles(edges)
    assert not cycles, "\n".join(
        f"import cycle between {c}:\n" + _where(imports, {(x, y) for x in c for y in c if x != y}, lambda m: m)
        for c in cycles
    )


def test_imports_inside_functions_say_why():
    """An import of our own module inside a function hides a dependency: it needs a comment saying why."""
    silent = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        if module in LAZY_BY_DESIGN:
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(PACKAGE)):
                    said = any(
                        "#" in line and "import" in line.lower() for line in lines[func.lineno - 1 : node.end_lineno]
                    )
                    if not said:
                        silent.append(f"  {path.relative_to(ROOT.parent)}:{node.lineno}: from {node.module} import ...")
    assert not silent, "imports inside functions without a comment saying why (move them to the top):\n" + "\n".join(
        silent
    )


def test_no_dagster_internals_in_product_code():
    hits = [
        f"  {p.relative_to(ROOT.parent)}:{n}: {line.strip()}"
        for p in sorted(ROOT.rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"dagster\._", line)
    ]
    assert not hits, "Dagster's private modules (use the public `dagster` API):\n" + "\n".join(hits)


def test_the_command_line_parser_imports_nothing_of_the_platform():
    """LAZY_BY_DESIGN's promise for the CLI: building its parser (what `alphapulse --help` and an argument error
    do) imports no platform module, no Dagster and no pandas. The breaker commands' parser once imported the alert
    router, the breaker store and with them Dagster: --help took 4 s instead of 0.13 s."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from alphapulse_assets import cli\n"
        "cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alphapulse_assets', 'dagster', 'pandas')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert loaded == ["alphapulse_assets", "alphapulse_assets.cli", "alphapulse_assets.text_tables"]
