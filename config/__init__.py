"""Settings from environment variables (12-factor) with embedded defaults, and rule files (YAML)."""

from config.settings import ConfigError, DingTalkSettings, Settings, load_settings

__all__ = ["ConfigError", "DingTalkSettings", "Settings", "load_settings"]
