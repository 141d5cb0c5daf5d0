"""Configurations, one per model type."""

from .configuration_longbird_bigbird import BigBirdConfig

__all__ = ["BigBirdConfig"]
