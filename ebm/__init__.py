"""Energy-based language models on the hypersphere."""

from .config import SCHEMA_VERSION, ConfigError, EBMConfig, small_config
from .model import EBMModel, SamplerSettings

__all__ = ["SCHEMA_VERSION", "ConfigError", "EBMConfig", "EBMModel", "SamplerSettings", "small_config"]
__version__ = "0.1.0"
