"""Background training, evaluation and diagnosis for ebm models.

Modules that the dashboard imports (logs, status, files) must not import torch.
"""
