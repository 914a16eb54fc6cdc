"""Energy-based language models on the hypersphere."""

import os

# torch's OpenMP threads spin while idle by default; beside numba's parallel kernels, or another
# process (the trainer next to the dashboard), the spinning starved them: 20 steps of the tests'
# tiny run took 46 s instead of 0.8 s. Passive waiting must be chosen before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .backend import TORCH, TorchBackend, VulkanBackend, backend_for
from .composition import COMPOSERS, Budget, ChainSettings, ComposedSample, compose
from .config import ConfigError, EBMConfig, small_config
from .constraints import Avoid, Keyword, RightContext, Topic
from .model import EBMModel
from .objective import training_loss
from .sampler import SamplerSettings, generate, generate_stream, sample
from .scoring import decoder_logprobs, token_logprobs

__all__ = [
    "COMPOSERS",
    "TORCH",
    "Avoid",
    "Budget",
    "ChainSettings",
    "ComposedSample",
    "Keyword",
    "RightContext",
    "Topic",
    "compose",
    "ConfigError",
    "EBMConfig",
    "EBMModel",
    "SamplerSettings",
    "TorchBackend",
    "VulkanBackend",
    "backend_for",
    "decoder_logprobs",
    "generate",
    "generate_stream",
    "sample",
    "small_config",
    "token_logprobs",
    "training_loss",
]
__version__ = "0.5.0"
