"""Energy-based language models on the hypersphere."""

import os

# torch's OpenMP threads spin while idle by default; beside numba's parallel kernels, or another
# process (the trainer next to the dashboard), the spinning starved them: 20 steps of the tests'
# tiny run took 46 s instead of 0.8 s. Passive waiting must be chosen before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import SCHEMA_VERSION, ConfigError, EBMConfig, small_config
from .model import EBMModel, SamplerSettings

__all__ = ["SCHEMA_VERSION", "ConfigError", "EBMConfig", "EBMModel", "SamplerSettings", "small_config"]
__version__ = "0.1.0"
