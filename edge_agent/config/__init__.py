"""The node's configuration: strict pydantic models (unknown keys refused, every field described and bounded).

``camera`` holds what one camera needs (source, capture, motion gate, zones, rules), ``node`` the node-wide
services (model, broker, outbox, evidence, scheduler, metrics, state) and ``agent`` the whole file with its YAML
loader. Every stage reads its own part; central imports ``parse_config`` to validate a config before pushing it
(pydantic only: no OpenCV or onnxruntime).
"""

from edge_agent.config.agent import AgentConfig, load_config, parse_config
from edge_agent.config.base import ConfigError
from edge_agent.config.camera import CameraConfig, CaptureConfig, MotionConfig
from edge_agent.config.node import (
    EvidenceConfig,
    MetricsConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    PrivacyConfig,
    SchedulerConfig,
    StateConfig,
)
from edge_agent.rules.sceneconfig import ZoneConfig

__all__ = [
    "AgentConfig",
    "CameraConfig",
    "CaptureConfig",
    "ConfigError",
    "EvidenceConfig",
    "MetricsConfig",
    "ModelConfig",
    "MotionConfig",
    "MqttConfig",
    "OutboxConfig",
    "PrivacyConfig",
    "SchedulerConfig",
    "StateConfig",
    "ZoneConfig",
    "load_config",
    "parse_config",
]
