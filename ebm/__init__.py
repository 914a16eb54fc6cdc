"""Energy-based language models on the hypersphere."""

from . import runtime

runtime.configure()  # before torch loads: see ebm/runtime.py

from .config import SCHEMA_VERSION, ConfigError, EBMConfig, small_config  # noqa: E402
from .model import EBMModel, SamplerSettings  # noqa: E402

__all__ = ["SCHEMA_VERSION", "ConfigError", "EBMConfig", "EBMModel", "SamplerSettings", "small_config"]
__version__ = "0.1.0"
