"""Training, evaluation and diagnosis of ebm models: the training loop and its helpers, data and
tokenizers. The files a run writes are the `runs` package's; the command lines are `commands`'."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; why: ebm/__init__.py
