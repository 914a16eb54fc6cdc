"""The README's library example runs as written."""

import re

from conftest import ROOT


def test_library_example_runs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"## Using the library\n\n```python\n(.*?)```", text, flags=re.S)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # the README's own code, nothing from disk
    assert scope["logp"].shape == (4, scope["cfg"].seq_length) and len(scope["steps"]) == 20
    assert len(scope["ids"]) == 8 and set(scope["sample"].met) == {"42", "avoid"}
