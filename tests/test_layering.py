"""The layout keeps its promises: packages depend one way (app and commands on trainer, trainer on
runs, everything on ebm, never back), the run-file package loads no torch at import, the
dashboard imports no command-line module, no import cycle exists, and no two modules share a
file name. Read from the source with `ast`, so a lazy import inside a function counts too."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ebm", "runs", "trainer", "commands", "app", "integrations")
# what each package may import from the others (its own modules always)
ALLOWED = {
    "ebm": set(),
    "runs": {"ebm"},
    "trainer": {"ebm", "runs"},
    "commands": {"ebm", "runs", "trainer"},
    "app": {"ebm", "runs", "trainer"},
    "integrations": {"ebm", "runs", "trainer"},
}
HEAVY = ("torch", "numpy", "faiss", "safetensors", "ebm", "kp")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if "__pycache__" not in p.parts}


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports annotate; they load nothing
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def test_packages_depend_one_way():
    wrong = []
    for name, path in MODULES.items():
        own = name.split(".")[0]
        for target in imports(path):
            top = target.split(".")[0]
            if top in PACKAGES and top != own and top not in ALLOWED[own]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_the_run_file_package_imports_nothing_heavy_at_module_level():
    heavy = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if name.split(".")[0] == "runs"
        for target in imports(path, top_level_only=True)
        if target.split(".")[0] in HEAVY
    ]
    assert not heavy, heavy


def test_the_dashboard_imports_no_command_line_module():
    assert not [
        f"{n} imports {t}" for n, p in MODULES.items() if n.startswith("app") for t in imports(p) if t.startswith("commands")
    ]


def test_no_import_cycles():
    graph = defaultdict(set)
    for name, path in MODULES.items():
        for target in imports(path):  # a lazy import inside a function counts: it is a dependency all the same
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append(" -> ".join(stack[stack.index(node) :] + [node]))
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(MODULES):
        visit(name, [], done)
    assert not cycles, cycles


def test_no_two_modules_share_a_file_name():
    by_name = defaultdict(list)
    for name, path in MODULES.items():
        if path.name not in ("__init__.py", "__main__.py"):
            by_name[path.name].append(name)
    assert not {k: v for k, v in by_name.items() if len(v) > 1}


@pytest.mark.parametrize("module", ["runs.checkpoint", "runs.export_format", "runs.logs", "runs.status", "commands.cli"])
def test_light_modules_load_without_torch(module):
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr[-1000:]
