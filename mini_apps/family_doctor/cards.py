"""The cards the family-doctor app posts in a team's signed-doctor chat (签约医生群).

A notice about one resident (a follow-up or renewal reminder, a referral appointment) is a card without buttons:
it is delivered @-ing the resident and visible to the resident and the team only (`notices.notify_resident`), so
it may name the resident's condition; it still shows the resident's name masked, as group contexts should
(domain.md §5.4). The template is published in DingTalk's card platform under `template_id`.
"""

from __future__ import annotations

from bot.cards import CardTemplate, declare_card

RESIDENT_NOTICE = declare_card(
    CardTemplate(
        name="family_doctor.resident_notice",
        template_id="tpl-family-doctor-resident-notice",
        # title: the heading; resident: the masked name; markdown: the lines; link/link_text: an optional button-link
        params=("title", "resident", "markdown", "link", "link_text"),
    )
)
