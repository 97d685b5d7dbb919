"""Typed, frozen, nested configuration: YAML in, checked once, dotted overrides."""

from .load import cohort_size, describe_keys, load_config, to_dict, to_yaml
from .schema import Config

__all__ = ["Config", "cohort_size", "describe_keys", "load_config", "to_dict", "to_yaml"]
