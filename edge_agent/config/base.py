"""What every config model shares: strictness (unknown keys refused, frozen) and the one error type."""

from edge_agent.rules.sceneconfig import Strict

__all__ = ["ConfigError", "Strict"]


class ConfigError(ValueError):
    """A config that cannot be used, with a message that names the offending field."""
