"""Background training, evaluation and diagnosis for ebm models.

Modules that the dashboard imports (logs, status, files) must not import torch.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; why: ebm/__init__.py
