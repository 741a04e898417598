"""Retention (issue 9, privacy): when a campaign's `retention_until` has passed, its persons' identifying data go and
only the aggregate figures stay.

What is removed, per person of the campaign (`CampaignPerson`):
- the encrypted ID number, name, phone and address, and the masked copies (a masked name with a birth year still
  narrows a person down in a village);
- `id_hash` becomes `anon:<person id>`: unique per campaign as the constraint wants, and joinable to nothing (the
  keyed hash would still match the same ID number in a later roster of the same key);
- `resident_id`, the link to the family-doctor resident;
- `source_note`: free text copied from the uploaded file ("发热门诊", but equally "张三之母"); the figures do not
  use it.

What stays: division code, category and priority of the person; the task's state, times, place in the tree
(county, institution, team, doctor), `positive` and escalation level — everything the index reads.

Of the tasks: `ControlTask.result` is cleared (a template may have free-text and date fields: symptoms, the date
of a test). Of their events: `reason` is cleared (free text typed by doctors and administrators — a refusal,
"已死亡", a closing note — may name the person or a relative), and `detail.destination` of transfers goes (where the
person went: an address). The rest of `detail` are ids of nodes, teams and members and counts of attempts, kept.

The roster imports' `rejects` hold no personal data by design (roster.py reports row number, field key and a fixed
message, never the value; duplicate rows point at the earlier row number), so they need no clearing for privacy;
they are cleared anyway (`[]`), since the file they describe is gone and its rows mean nothing any more. The
import's counts, file name and digest stay.

How: every campaign due, persons in batches of `BATCH` ids by ascending id; per batch three set-based UPDATEs
(persons, their tasks, the tasks' events) committed together, so a job stopped half-way leaves whole batches done
and the next run picks up the persons not yet anonymised (`id_hash` not starting with `anon:`). When none are left
the imports' reports are cleared, `Campaign.anonymised_at` set and the act audited as the platform's own
(`audit.record` with no principal → actor "system"), in one commit. Roster intake into an anonymised campaign is
refused by roster.py (`_importable`).

The job runs daily at 02:30 China time (18:30 UTC): quiet hours, after the day's index snapshot.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm

from mini_apps.family_doctor.service import CHINA
from mini_apps.precision_control.models import Campaign, CampaignPerson, ControlTask, ControlTaskEvent, RosterImport
from workbench import audit, db
from workbench.db import utcnow

log = logging.getLogger(__name__)

BATCH = 5000  # persons per statement and commit: a few seconds of work, one short lock per batch
ANON_PREFIX = "anon:"
DAILY_SECONDS = 86400
DAILY_OFFSET = 18 * 3600 + 30 * 60  # 18:30 UTC = 02:30 China time


def china_day(now: datetime | None = None) -> date:
    """The calendar day in China: retention dates are China dates."""
    return (now or utcnow()).astimezone(CHINA).date()


def due_campaigns(session: orm.Session, now: datetime | None = None) -> list[int]:
    """Ids of the campaigns whose retention has passed (kept through `retention_until`, gone the day after) and
    whose persons have not been anonymised yet."""
    today = china_day(now)
    return list(
        session.scalars(
            sa.select(Campaign.id)
            .where(Campaign.retention_until < today, Campaign.anonymised_at.is_(None))
            .order_by(Campaign.id)
        )
    )


def _remaining(session: orm.Session, campaign_id: int, after: int, size: int) -> list[int]:
    """The ids of the next `size` persons of the campaign, past id `after`, still carrying their identifying data
    (only the first and last are used: a batch is that id range)."""
    return list(
        session.scalars(
            sa.select(CampaignPerson.id)
            .where(
                CampaignPerson.campaign_id == campaign_id,
                CampaignPerson.id > after,
                ~CampaignPerson.id_hash.startswith(ANON_PREFIX, autoescape=True),
            )
            .order_by(CampaignPerson.id)
            .limit(size)
        )
    )


def _destination(session: orm.Session) -> tuple[sa.ColumnElement, sa.ColumnElement[bool]]:
    """(`detail` without its free-text `destination` key, whether `detail` has one), on either backend."""
    detail = ControlTaskEvent.detail
    if session.get_bind().dialect.name == "postgresql":
        key = sa.literal_column("'destination'")
        return detail.op("-")(key), detail.op("?")(key)
    path = sa.literal_column("'$.destination'")
    return sa.func.json_remove(detail, path), sa.func.json_type(detail, path).is_not(None)


def anonymise_batch(session: orm.Session, campaign_id: int, first: int, last: int) -> dict[str, int]:
    """Strip the identifying data of the campaign's persons with ids `first`..`last`, their tasks' results and
    their events' free text: three set-based UPDATEs over an id range (no id lists to send). Does not commit."""
    in_range = sa.and_(CampaignPerson.campaign_id == campaign_id, CampaignPerson.id.between(first, last))
    persons = session.execute(
        sa.update(CampaignPerson)
        .where(in_range, ~CampaignPerson.id_hash.startswith(ANON_PREFIX, autoescape=True))
        .values(
            id_hash=sa.literal(ANON_PREFIX) + sa.cast(CampaignPerson.id, sa.String),
            id_cipher=None,
            name_cipher=None,
            phone_cipher=None,
            address_cipher=None,
            name_masked=None,
            id_masked=None,
            phone_masked=None,
            source_note=None,
            resident_id=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    tasks_in_range = sa.and_(ControlTask.campaign_id == campaign_id, ControlTask.person_id.between(first, last))
    tasks = session.execute(
        sa.update(ControlTask)
        .where(tasks_in_range, ControlTask.result.is_not(None))
        .values(result=sa.null())
        .execution_options(synchronize_session=False)
    ).rowcount
    without, has_destination = _destination(session)
    events = session.execute(
        sa.update(ControlTaskEvent)
        .where(
            ControlTaskEvent.task_id.in_(sa.select(ControlTask.id).where(tasks_in_range)),
            sa.or_(ControlTaskEvent.reason.is_not(None), has_destination),
        )
        .values(reason=None, detail=without)
        .execution_options(synchronize_session=False)
    ).rowcount
    return {"persons": persons, "results": tasks, "events": events}


def anonymise_campaign(session: orm.Session, campaign_id: int, *, batch: int = BATCH) -> dict[str, Any]:
    """Anonymise one campaign's persons batch by batch (each committed), then mark the campaign and audit it.
    Resumes a previous run that stopped part-way: only persons still identifiable are touched."""
    done = {"persons": 0, "results": 0, "events": 0, "batches": 0}
    after = 0
    while ids := _remaining(session, campaign_id, after, batch):
        counts = anonymise_batch(session, campaign_id, ids[0], ids[-1])
        session.commit()
        after = ids[-1]
        done["batches"] += 1
        for key in ("persons", "results", "events"):
            done[key] += counts[key]
        _after_batch(campaign_id, done)
    campaign = session.scalar(
        sa.select(Campaign)
        .where(Campaign.id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if campaign is None or campaign.anonymised_at is not None:  # another run finished it meanwhile
        session.rollback()
        return {"campaign_id": campaign_id, **done, "finished": False}
    # Under the campaign's lock, anyone an import added since the last batch (the rest of the run is cheap: the
    # index scan finds nothing when nothing came).
    after = 0
    while ids := _remaining(session, campaign_id, after, batch):
        counts = anonymise_batch(session, campaign_id, ids[0], ids[-1])
        after = ids[-1]
        for key in ("persons", "results", "events"):
            done[key] += counts[key]
    session.execute(
        sa.update(RosterImport)
        .where(RosterImport.campaign_id == campaign_id)
        .values(rejects=[])
        .execution_options(synchronize_session=False)
    )
    campaign.anonymised_at = utcnow()
    # A campaign still running when its retention passes ends with it: nobody works (or writes free text into) the
    # tasks of persons who are no longer there, and no reminder or escalation goes out about them.
    ended = campaign.state != "ended"
    campaign.state = "ended"
    audit.record(
        None,
        "control.campaign.anonymise",
        resource_type="control_campaign",
        resource_id=campaign_id,
        node_id=campaign.owner_node_id,
        detail={
            "retention_until": campaign.retention_until.isoformat(),
            "persons": done["persons"],
            "results": done["results"],
            "events": done["events"],
            "ended": ended,
        },
        session=session,
    )
    session.commit()
    log.info("campaign anonymised", extra={"rows": done["persons"], "result": "ok"})
    return {"campaign_id": campaign_id, **done, "finished": True}


def _after_batch(campaign_id: int, done: dict[str, int]) -> None:
    """Called after each committed batch (progress logging; the seam tests use to stop a run half-way)."""
    log.info("anonymise batch", extra={"rows": done["persons"], "result": f"batch {done['batches']}"})


def enforce(now: datetime | None = None, *, batch: int = BATCH) -> dict[str, Any]:
    """The retention job: anonymise every campaign whose retention has passed. Returns what each got; fails (after
    the others ran) when one could not be finished."""
    session = db.session()
    campaigns, failed = [], []
    for campaign_id in due_campaigns(session, now):
        try:
            campaigns.append(anonymise_campaign(session, campaign_id, batch=batch))
        except Exception:  # the others still go; this one resumes at the next run from its last whole batch
            session.rollback()
            failed.append(campaign_id)
            log.exception("retention of a campaign failed", extra={"job": "precision_control.retention"})
    if failed:
        raise RuntimeError(f"retention failed for campaigns {failed}")
    return {"campaigns": campaigns, "persons": sum(c["persons"] for c in campaigns)}


def init_app(app: Flask) -> None:
    app.extensions["workbench.queue"].every(DAILY_SECONDS, enforce, offset=DAILY_OFFSET)
