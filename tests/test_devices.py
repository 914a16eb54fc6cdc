"""Tensors made at run time must be made on the device of the tensors they meet: a constructor
without `device=` makes a CPU tensor, which a CUDA run then mixes with its own (the crash of
`--device cuda` in its first step). Constructors in `__init__` build parameters and buffers
that move with their module (`.to(device)`); a constructor that belongs on the host says why
in a `# host:` comment on its line."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRUCTORS = {"zeros", "ones", "full", "empty", "arange", "rand", "randn", "randint", "randperm", "tensor", "linspace", "eye"}


def constructors_without_device(source: str) -> list[int]:
    """Line numbers of torch.<constructor>(...) calls without device=, outside __init__ and # host: lines."""
    tree, lines = ast.parse(source), source.splitlines()
    found = []

    def visit(node: ast.AST, in_init: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_init or (isinstance(child, ast.FunctionDef) and child.name == "__init__")
            if isinstance(child, ast.Call) and _is_torch_constructor(child.func):
                keywords = {k.arg for k in child.keywords}
                if "device" not in keywords and not inside and "# host:" not in lines[child.lineno - 1]:
                    found.append(child.lineno)
            visit(child, inside)

    visit(tree, False)
    return found


def _is_torch_constructor(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and func.attr in CONSTRUCTORS
        and isinstance(func.value, ast.Name)
        and func.value.id == "torch"
    )


def test_the_check_finds_a_constructor_without_a_device():
    source = (
        "import torch\ndef f(x):\n    return x + torch.zeros(3)\n"
        "class M:\n    def __init__(self):\n        self.b = torch.zeros(3)\n"
    )
    assert constructors_without_device(source) == [3]
    assert constructors_without_device(source.replace("zeros(3)\nclass", "zeros(3, device=x.device)\nclass")) == []
    assert constructors_without_device(source.replace("torch.zeros(3)\nclass", "torch.zeros(3)  # host: why\nclass")) == []


def test_runtime_tensors_in_ebm_and_trainer_name_their_device():
    offenders = []
    for folder in ("ebm", "trainer"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            offenders += [f"{path.relative_to(ROOT)}:{n}" for n in constructors_without_device(path.read_text())]
    assert not offenders, "torch constructors without device= (or a '# host:' reason): " + ", ".join(offenders)
