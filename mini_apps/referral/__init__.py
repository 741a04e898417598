"""预约转诊 · 双向转诊 (reference/domain.md §4): referrals up to the county hospital and back down, with slots,
SLA timers, cards to the receiving department and the patient told in their family doctor's chat (issue 7).

Built so far: the state machine (`states`) and the data model (`models`, migration 0010).
"""
