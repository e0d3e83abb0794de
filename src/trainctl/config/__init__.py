"""PaddleDetection configs without paddle: layering, overrides, provenance, validation.

    from trainctl.config import resolve, find_config, dump_yaml, Tagged, ResolvedConfig
    rc = resolve("roadsign.yml", overrides=["TrainReader.batch_size=4"])

Imports only the standard library and PyYAML (`--dry-run` stays fast).
"""

from __future__ import annotations

from trainctl.config.locate import BUNDLED_DIR, bundled_configs, find_config
from trainctl.config.resolve import Layer, ResolvedConfig, resolve
from trainctl.config.yamlio import Tagged, dump_yaml, load_yaml_file, load_yaml_text

__all__ = [
    "BUNDLED_DIR",
    "Layer",
    "ResolvedConfig",
    "Tagged",
    "bundled_configs",
    "dump_yaml",
    "find_config",
    "load_yaml_file",
    "load_yaml_text",
    "resolve",
]
