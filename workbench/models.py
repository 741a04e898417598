"""Every model of every part, imported so that Alembic sees the whole schema."""

from bot.models import BotApproval, BotCard, DailySend, OutboxMessage, WebhookRobot
from mini_apps.catalog.models import AppGroup, CatalogApp
from mini_apps.compensation.models import (
    EquivalentTable,
    EquivalentValue,
    InstitutionTier,
    ServiceItem,
    WorkloadBatch,
    WorkloadExclusion,
    WorkloadQuantity,
)
from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, Resident, TeamMember
from mini_apps.precision_control.models import (
    Campaign,
    CampaignPerson,
    ControlIndexDay,
    ControlNotice,
    ControlTask,
    ControlTaskEvent,
    DispatchRule,
    RosterImport,
    ServiceArea,
)
from mini_apps.referral.models import Referral, ReferralAttachment, ReferralEvent, ReferralSlot
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode, OrgSyncRun
from org_sync.staging import OrgStageDept, OrgStageMembership, OrgStageUser, OrgSyncLock
from supervision.models import (
    Alert,
    AlertNotification,
    AlertRoute,
    AlertRule,
    AlertSilence,
    FeedSystem,
    Indicator,
    IndicatorEvidence,
    IndicatorRollup,
    IndicatorSubmission,
    IndicatorTarget,
    IndicatorValue,
    IndicatorVersion,
)
from workbench.audit import AuditRecord
from workbench.auth.models import RefreshToken, RoleGrant
from workbench.db import Model
from workbench.dingtalk.events import DingTalkEvent
from workbench.dingtalk.meter import QuotaUsage

metadata = Model.metadata

__all__ = [
    "Alert",
    "AlertNotification",
    "AlertRoute",
    "AlertRule",
    "AlertSilence",
    "AppGroup",
    "AuditRecord",
    "BotApproval",
    "BotCard",
    "Campaign",
    "CampaignPerson",
    "CatalogApp",
    "Contract",
    "ControlIndexDay",
    "ControlNotice",
    "ControlTask",
    "ControlTaskEvent",
    "DailySend",
    "DingTalkEvent",
    "DispatchRule",
    "EquivalentTable",
    "EquivalentValue",
    "FamilyDoctorTeam",
    "FeedSystem",
    "Indicator",
    "IndicatorEvidence",
    "IndicatorRollup",
    "IndicatorSubmission",
    "IndicatorTarget",
    "IndicatorValue",
    "IndicatorVersion",
    "InstitutionTier",
    "Model",
    "OrgChange",
    "OrgMember",
    "OrgMembership",
    "OrgNode",
    "OrgStageDept",
    "OrgStageMembership",
    "OrgStageUser",
    "OrgSyncLock",
    "OrgSyncRun",
    "OutboxMessage",
    "QuotaUsage",
    "Referral",
    "ReferralAttachment",
    "ReferralEvent",
    "ReferralSlot",
    "RefreshToken",
    "Resident",
    "RoleGrant",
    "RosterImport",
    "ServiceArea",
    "ServiceItem",
    "TeamMember",
    "WebhookRobot",
    "WorkloadBatch",
    "WorkloadExclusion",
    "WorkloadQuantity",
    "metadata",
]
