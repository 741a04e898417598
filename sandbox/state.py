"""Everything the running sandbox remembers, in one object hung on the aiohttp application."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.approvals import ApprovalStore
from sandbox.cards import CardStore
from sandbox.events import EventBus
from sandbox.faults import FaultInjector
from sandbox.freelogin import AuthStore
from sandbox.groups import GroupStore
from sandbox.messages import MessageStore
from sandbox.notices import NoticeStore
from sandbox.residents import ResidentAccounts
from sandbox.settings import Settings
from sandbox.stream import StreamHub
from sandbox.throttle import Throttle
from sandbox.tokens import TokenStore
from sandbox.webhook import RobotStore

if TYPE_CHECKING:
    from sandbox.province import Province


@dataclass
class SandboxState:
    """The province plus every store. `lock` guards the province: contact changes run in a worker thread."""

    settings: Settings
    province: Province
    lock: threading.RLock = field(default_factory=threading.RLock)
    tokens: TokenStore = field(init=False)
    throttle: Throttle = field(init=False)
    faults: FaultInjector = field(init=False)
    stream: StreamHub = field(default_factory=StreamHub)
    events: EventBus = field(init=False)
    auth: AuthStore = field(default_factory=AuthStore)
    messages: MessageStore = field(default_factory=MessageStore)
    groups: GroupStore = field(default_factory=GroupStore)
    robots: RobotStore = field(default_factory=RobotStore)
    notices: NoticeStore = field(default_factory=NoticeStore)
    cards: CardStore = field(default_factory=CardStore)
    approvals: ApprovalStore = field(default_factory=ApprovalStore)
    residents: ResidentAccounts = field(default_factory=ResidentAccounts)

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.settings.token_ttl)
        self.throttle = Throttle(self.settings.qps)
        self.faults = FaultInjector(self.settings.fault_rate, self.settings.fault_delay, self.settings.seed)
        self.events = EventBus(self.settings, self.stream)
