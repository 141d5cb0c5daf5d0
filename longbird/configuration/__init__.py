"""Configurations, one per model type."""

from .configuration_longbird_bigbird import BigBirdConfig
from .configuration_longbird_bigbird_pegasus import BigBirdPegasusConfig
from .configuration_longbird_etc import EtcConfig

__all__ = ["BigBirdConfig", "BigBirdPegasusConfig", "EtcConfig"]
