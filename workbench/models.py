"""Every model of every part, imported so that Alembic sees the whole schema."""

from workbench.db import Model
from workbench.dingtalk.events import DingTalkEvent
from workbench.dingtalk.meter import QuotaUsage

metadata = Model.metadata

__all__ = ["DingTalkEvent", "QuotaUsage", "metadata"]
