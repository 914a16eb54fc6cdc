"""The command-line tools: ebm-train, ebm-evaluate, ebm-generate, ebm-diagnose and ebm-export.

`cli` holds every parser and entry point; each `*_command` module runs one command from its
frozen spec (`specs`). Nothing outside this package imports it but the entry points."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; why: ebm/__init__.py
