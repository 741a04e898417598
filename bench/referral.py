"""Benchmark of the referral API under load (issue 7; not a test): the scoped inbox and outbox lists over a province
of referral history, and creating and accepting referrals concurrently, side by side with the bare endpoint
`/_bench/constant` of bench/api.py in the same server and run.

Set-up, all its own and mostly bench/api.py's: PostgreSQL and Redis from scripts/test-services.sh in a private
directory on private ports; a sandbox at `city` scale (宁波: 10 counties, 16 医共体, ~140 member institutions,
~25,000 people), its tree applied by a full sync through the gateway; gunicorn with gunicorn.conf.py and
bench/api_wsgi.py. The history: `--referrals` (default 1,000,000) referrals over three years generated set-based in
PostgreSQL (`INSERT … SELECT … generate_series`) across every 医共体 of the city: up-referrals from each member
institution to its lead hospital, down-referrals back, lateral ones between members; volume growing over the years;
states by age (closed, cancelled, rejected … for old ones, the live states in the last weeks); priorities, modes,
reasons and diagnoses drawn from plausible shares; milestone times in order. Each patient snapshot (ID number, phone
and clinical summary encrypted with the app's keys, lookup hash, masks) is one of `referrals / 2000` precomputed
valid patients, so every row decrypts and reads through the API. On top, `--accept-pool` submitted up-referrals
to the measured hospital, for the accept load. Secondary indexes are dropped for the load and rebuilt from their
definitions, then VACUUM ANALYZE. Not generated: the referrals' events (timelines), cards and down-referrals' links
to their up-referral (`parent_id`); the lists read none of them.

Members (signed in through sandbox free-login codes): a referral coordinator of the lead hospital of the city's
largest 医共体 (granted over the API by the county's administrator), reading the inbox and accepting; a township
hospital doctor of that 医共体, reading the outbox and their own inbox (the down-referrals to the township: what most
institutions' inboxes look like, small lists in a big table), and creating (submitted, consent given, a hand-entered
patient with a distinct valid ID number per request, a target department of the hospital in turn).

Load: wrk (apt-get when missing) with a Lua script that gives each request its own body or path (one line per
request in a file, split between wrk's threads; accepts are never repeated: each round takes the still submitted
referrals afresh), or without wrk a multi-process Python client. Rounds interleaved, median round reported.
Ratio = rps / constant rps. Before each measurement the bench waits for gunicorn and PostgreSQL to go idle (a slow
list leaves queued requests behind). Before the rounds the statements each list runs on `referrals` are captured
from an in-process request and run under EXPLAIN (ANALYZE, BUFFERS), with the coordinator's counts as the service
ran them before issue 7's fix for comparison; full plans in the run's temporary directory (plans.txt).

The history takes minutes to build; `--reuse` keeps it between runs (same size and scale), undoing the previous
rounds' creates and accepts first.

    .venv/bin/python bench/referral.py                       # prints the figures
    .venv/bin/python bench/referral.py --write               # and replaces "## Referral" in docs/BENCHMARKS.md
    .venv/bin/python bench/referral.py --referrals 20000 --seconds 3 --rounds 1   # a quick try
    .venv/bin/python bench/referral.py --reuse --out /tmp/referral.md             # again on the same history
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402  (bench.api also clears proxies for loopback)
    Gunicorn,
    Target,
    _children,
    _median,
    have_wrk,
    measure,
    sign_in,
    start_services,
)
from bench.api_load import Call, Result, python_calls, wrk_calls  # noqa: E402
from bench.report import write_section  # noqa: E402
from tests.support.sandbox import SandboxProcess  # noqa: E402
from workbench import close_app  # noqa: E402

COMMAND = ".venv/bin/python bench/referral.py --write"
SERVICES = {
    "TEST_SERVICES_DIR": "/tmp/workbench-bench-referral",
    "TEST_PG_PORT": "55670",
    "TEST_REDIS_PORT": "56670",
}
HEADING = "## Referral"
YEARS = 3
# Common reasons to refer in a county (ICD-10): hypertension, diabetes, stroke, pneumonia, COPD, coronary disease,
# heart failure, gallstones, hip fracture, chronic kidney disease, lung cancer, cataract.
DIAGNOSES = ("I10", "E11.9", "I63.9", "J18.9", "J44.9", "I25.1", "I50.9", "K80.2", "S72.0", "N18.9", "C34.9", "H25.9")
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = "秀英桂英玉兰凤英建华志强国平明芳淑珍丽华建国海燕春梅德胜永红金花小红秋菊文华秀兰玉珍志明建军丽娟"


# --- set-up ---------------------------------------------------------------------------------------------------


def make_app(env: dict[str, str], **extra: str):
    from config import load_settings
    from workbench import create_app

    return create_app(load_settings({**env, **extra}, read_dotenv=False))


def seed_tree_by_sync(env: dict[str, str]) -> None:
    """A fresh schema, then the sandbox's tree applied by a full sync (the set-based apply: at city scale much
    faster than bench/api.py's per-member seed), the gateway's limit lifted like the sandbox's."""
    import redis

    from org_sync.full_sync import run_full_sync
    from tests.conftest import migrate, reset_postgres

    reset_postgres(env["DATABASE_URL"])
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    app = make_app(env, DINGTALK_QPS="1000000", LOG_LEVEL="WARNING")
    migrate(app.config["SETTINGS"].database_url)
    started = time.perf_counter()
    with app.app_context():
        result = run_full_sync()
    if result.state != "succeeded":
        raise SystemExit(f"full sync ended {result.state}")
    print(f"  tree synced in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    close_app(app)


@dataclass
class Member:
    label: str
    userid: str
    name: str
    title: str
    unit: str
    token: str = ""


@dataclass
class World:
    hospital_dept: int  # DingTalk dept ids
    county_dept: int
    coordinator: Member
    doctor: Member
    doctor_dept: int
    admin_userid: str
    hospital_id: int = 0  # node ids, once synced
    hospital_name: str = ""
    hospital_departments: list[int] = field(default_factory=list)
    doctor_department_id: int = 0
    doctor_institution_id: int = 0
    member_institutions: int = 0


def pick_world(sandbox: SandboxProcess) -> World:
    """The lead hospital of the 医共体 with the most member institutions, a clinician of one of its departments
    (to become its referral coordinator), a doctor of a township hospital (卫生院) of that 医共体, and the
    county's administrator, all from the sandbox's truth."""
    from tests.support.tree import Tree

    t = Tree(sandbox.admin("GET", "truth").json())
    members: dict[int, int] = {}
    for dept in t.depts:
        if t.level(dept) == "member_institution":
            lead = next((d for d in t.ancestors(dept) if t.level(d) == "medical_community_lead"), None)
            if lead is not None:
                members[lead] = members.get(lead, 0) + 1
    only_in = {}
    for user in t.users:
        if len(user["dept_id_list"]) == 1:
            only_in.setdefault(user["dept_id_list"][0], []).append(user)
    for lead in sorted(members, key=lambda d: -members[d]):
        county = t.county_of(lead)
        staff = [
            u
            for d in t.depts
            if t.level(d) == "internal_department" and t.unit_of(d) == lead
            for u in only_in.get(d, [])
        ]
        doctors = [
            (u, d)
            for d in t.depts
            if t.level(d) == "internal_department"
            and t.level(t.unit_of(d)) == "member_institution"
            and "卫生院" in t.depts[t.unit_of(d)]["name"]
            and lead in t.ancestors(d)
            for u in only_in.get(d, [])
        ]
        try:
            admin = t.member_at("county_bureau", county=county)
        except LookupError:
            continue
        if staff and doctors and county:
            coordinator = staff[0]
            doctor, doctor_dept = doctors[0]

            def member(label: str, user: dict) -> Member:
                unit = t.depts[t.unit_of(user["dept_id_list"][0])]["name"]
                return Member(label, user["userid"], user["name"], user.get("title") or "", unit)

            return World(
                hospital_dept=lead,
                county_dept=county,
                coordinator=member("hospital referral coordinator", coordinator),
                doctor=member("township doctor", doctor),
                doctor_dept=doctor_dept,
                admin_userid=admin["userid"],
                member_institutions=members[lead],
            )
    raise SystemExit("no 医共体 with a coordinator, a township doctor and a county administrator in the sandbox")


def node_ids(engine, world: World) -> None:
    import sqlalchemy as sa

    with engine.connect() as conn:

        def node(dept_id: int) -> tuple[int, str]:
            return conn.execute(sa.text("SELECT id, name FROM org_nodes WHERE dept_id = :d"), {"d": dept_id}).one()

        world.hospital_id, world.hospital_name = node(world.hospital_dept)
        world.doctor_department_id = node(world.doctor_dept)[0]
        world.doctor_institution_id = conn.scalar(
            sa.text(
                "SELECT i.id FROM org_nodes i JOIN org_nodes d ON d.path LIKE i.path || '%' WHERE d.id = :d "
                "AND i.level IN ('medical_community_lead', 'member_institution') ORDER BY i.depth DESC LIMIT 1"
            ),
            {"d": world.doctor_department_id},
        )
        world.hospital_departments = list(
            conn.scalars(
                sa.text(
                    "SELECT d.id FROM org_nodes d WHERE d.parent_id = :h AND d.level = 'internal_department' "
                    "AND d.deleted_at IS NULL ORDER BY d.id"
                ),
                {"h": world.hospital_id},
            )
        )


def grant_coordinator(server: Gunicorn, sandbox: SandboxProcess, world: World) -> None:
    """The county administrator grants `referral_coordinator` on the hospital, as in tests/referral/conftest.py."""
    admin = Member("county administrator", world.admin_userid, "", "", "")
    token = sign_in(server, sandbox, admin)
    reply = requests.post(
        server.url + "/api/auth/grants",
        json={"userid": world.coordinator.userid, "role": "referral_coordinator", "node_id": world.hospital_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if reply.status_code != 201:
        raise SystemExit(f"grant refused: {reply.status_code} {reply.text[:300]}")


# --- the history ------------------------------------------------------------------------------------------------

CATALOG_SQL = """
CREATE TEMP TABLE b_inst AS
SELECT n.id, n.level, n.path,
       (SELECT l.id FROM org_nodes l
         WHERE l.level = 'medical_community_lead' AND l.deleted_at IS NULL AND n.path LIKE l.path || '%'
         ORDER BY l.depth DESC LIMIT 1) AS lead_id,
       NULL::int[] AS depts, NULL::int AS member_id
  FROM org_nodes n
 WHERE n.level IN ('medical_community_lead', 'member_institution') AND n.deleted_at IS NULL;

CREATE TEMP TABLE b_dept AS
SELECT d.id,
       (SELECT i.id FROM b_inst i WHERE d.path LIKE i.path || '%' ORDER BY length(i.path) DESC LIMIT 1) AS inst_id
  FROM org_nodes d
 WHERE d.level = 'internal_department' AND d.deleted_at IS NULL;

UPDATE b_inst i SET depts = (SELECT array_agg(d.id ORDER BY d.id) FROM b_dept d WHERE d.inst_id = i.id);
-- The applicant doctor of generated rows: one member with a position in the institution's own departments.
UPDATE b_inst i SET member_id = (
  SELECT min(m.member_id) FROM org_memberships m WHERE m.node_id = i.id OR m.node_id = ANY(i.depts));
DELETE FROM b_inst WHERE depts IS NULL OR member_id IS NULL OR lead_id IS NULL;
DELETE FROM b_inst m
 WHERE m.level = 'member_institution' AND NOT EXISTS (SELECT 1 FROM b_inst l WHERE l.id = m.lead_id);

-- Lanes, repeated by weight: up (member -> its lead) 7, down (lead -> member) 2, lateral (member -> the next
-- member of the same 医共体) 1. A lane is drawn uniformly, so each 医共体 gets history in proportion to its size.
CREATE TEMP TABLE b_lane (lane serial PRIMARY KEY, direction text, app int, tgt int);
INSERT INTO b_lane (direction, app, tgt)
SELECT 'up', m.id, m.lead_id FROM b_inst m, generate_series(1, 7) WHERE m.level = 'member_institution';
INSERT INTO b_lane (direction, app, tgt)
SELECT 'down', m.lead_id, m.id FROM b_inst m, generate_series(1, 2) WHERE m.level = 'member_institution';
INSERT INTO b_lane (direction, app, tgt)
SELECT 'lateral', id, nxt FROM (
  SELECT id, lead(id) OVER (PARTITION BY lead_id ORDER BY id) AS nxt FROM b_inst WHERE level = 'member_institution'
) x WHERE nxt IS NOT NULL;

-- The accept pool's lanes: up-referrals into the measured hospital.
CREATE TEMP TABLE b_pool_lane (lane serial PRIMARY KEY, direction text, app int, tgt int);
INSERT INTO b_pool_lane (direction, app, tgt)
SELECT 'up', m.id, m.lead_id FROM b_inst m WHERE m.level = 'member_institution' AND m.lead_id = :hospital;

CREATE TEMP TABLE b_patient (
  k int PRIMARY KEY, name text, id_hash text, id_cipher text, id_masked text, sex text, birth date,
  phone_cipher text, phone_masked text, clinical text);
"""

# One chunk of rows [g0, g1] out of n: time runs with g (ids ascend with creation, as in production), the
# density of referrals rising linearly to twice the first year's over the span (age from the inverse CDF).
HISTORY_SQL = """
INSERT INTO referrals (
  id, referral_no, direction, mode, priority, state, applicant_institution_id, applicant_department_id,
  applicant_member_id, target_institution_id, target_department_id, target_member_id, reason_code, reason_text,
  resident_id, patient_name, patient_id_hash, patient_id_cipher, patient_id_masked, patient_sex, patient_birth_date,
  patient_phone_cipher, patient_phone_masked, consent, consent_at, primary_diagnosis_code, primary_diagnosis_name,
  secondary_diagnoses, clinical_cipher, accepted_by_member_id, respond_by, submitted_at, accepted_at, arrived_at,
  completed_at, closed_at, created_at, updated_at)
WITH s AS (
  SELECT g, {created} AS created,
         random() AS r_lane, random() AS r_state, random() AS r_pri, random() AS r_mode, random() AS r_reason,
         random() AS r_adept, random() AS r_tdept, random() AS r_dx, random() AS r_t0, random() AS r_t1,
         random() AS r_t2, random() AS r_t3
    FROM generate_series(CAST(:g0 AS int), CAST(:g1 AS int)) g
), t AS (
  SELECT s.*, l.direction, l.app, l.tgt, extract(epoch FROM CAST(:now AS timestamptz) - s.created) / 86400 AS age
    FROM s JOIN {lanes} l ON l.lane = 1 + floor(s.r_lane * (SELECT count(*) FROM {lanes}))::int
), u AS (
  SELECT t.*, {state} AS up_state FROM t
), v AS (
  SELECT u.*,
         CASE WHEN direction <> 'down' THEN up_state
              WHEN up_state = 'scheduled' THEN 'accepted'
              WHEN up_state = 'arrived' THEN 'received_patient'
              WHEN up_state IN ('in_treatment', 'completed') THEN 'rehab_follow_up'
              WHEN up_state = 'no_show' THEN 'closed'
              ELSE up_state END AS st,
         CASE WHEN r_pri < 0.03 AND direction <> 'down' THEN 'green' WHEN r_pri < 0.15 THEN 'urgent'
              ELSE 'routine' END AS pri
    FROM u
), m AS (
  SELECT v.*,
         CASE WHEN st = 'draft' THEN NULL ELSE created + make_interval(mins => 2 + floor(r_t0 * 28)::int) END AS sub_at,
         st IN ('accepted', 'scheduled', 'arrived', 'in_treatment', 'completed', 'closed', 'no_show',
                'received_patient', 'rehab_follow_up') AS was_accepted,
         st IN ('arrived', 'in_treatment', 'completed', 'closed', 'received_patient', 'rehab_follow_up') AS came,
         st IN ('completed', 'closed') AND direction <> 'down' AS done
    FROM v
), w AS (
  SELECT m.*,
         CASE WHEN was_accepted THEN LEAST(sub_at + make_interval(secs => 600 + r_t1 * r_t1 * 86400 * 1.5),
                                           CAST(:now AS timestamptz)) END AS acc_at
    FROM m
), x AS (
  SELECT w.*,
         CASE WHEN came THEN LEAST(acc_at + make_interval(secs => 3600 + r_t2 * 86400 * 6), CAST(:now AS timestamptz))
              END AS arr_at
    FROM w
), y AS (
  SELECT x.*,
         CASE WHEN done THEN LEAST(arr_at + make_interval(secs => 7200 + r_t3 * 86400 * 10), CAST(:now AS timestamptz))
              END AS comp_at
    FROM x
), z AS (
  SELECT y.*,
         CASE WHEN st <> 'closed' THEN NULL
              WHEN direction = 'down' THEN LEAST(arr_at + interval '30 days', CAST(:now AS timestamptz))
              WHEN comp_at IS NOT NULL THEN LEAST(comp_at + interval '1 day', CAST(:now AS timestamptz))
              ELSE LEAST(COALESCE(arr_at, sub_at, created) + interval '3 days', CAST(:now AS timestamptz)) END AS clo_at
    FROM y
)
SELECT z.g,
       'ZZ' || to_char(z.created AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD')
         || lpad(z.g::text, GREATEST(6, length(z.g::text)), '0'),  -- padded like the service's, never cut
       z.direction,
       CASE WHEN z.pri = 'green' THEN 'emergency'
            WHEN z.direction = 'down' THEN CASE WHEN z.r_mode < 0.7 THEN 'outpatient' ELSE 'inpatient' END
            WHEN z.r_mode < 0.55 THEN 'outpatient' WHEN z.r_mode < 0.88 THEN 'inpatient'
            WHEN z.r_mode < 0.97 THEN 'examination' ELSE 'emergency' END,
       z.pri, z.st, z.app, a.depts[1 + floor(z.r_adept * cardinality(a.depts))::int], a.member_id,
       z.tgt,
       CASE WHEN z.direction = 'down' THEN NULL ELSE tt.depts[1 + floor(z.r_tdept * cardinality(tt.depts))::int] END,
       NULL,
       CASE WHEN z.direction = 'down' THEN CASE WHEN z.r_reason < 0.9 THEN 'rehab_chronic' ELSE 'patient_wish' END
            WHEN z.direction = 'lateral' THEN CASE WHEN z.r_reason < 0.6 THEN 'capability' ELSE 'further_care' END
            WHEN z.r_reason < 0.5 THEN 'further_care' WHEN z.r_reason < 0.85 THEN 'capability'
            ELSE 'patient_wish' END,
       '',
       NULL, p.name, p.id_hash, p.id_cipher, p.id_masked, p.sex, p.birth, p.phone_cipher, p.phone_masked,
       z.st <> 'draft' OR z.r_mode < 0.5, CASE WHEN z.st <> 'draft' OR z.r_mode < 0.5 THEN z.created END,
       (CAST(:dx_codes AS text[]))[1 + floor(z.r_dx * z.r_dx * :dx_n)::int],
       (CAST(:dx_names AS text[]))[1 + floor(z.r_dx * z.r_dx * :dx_n)::int],
       CAST('[]' AS jsonb), p.clinical,
       CASE WHEN z.acc_at IS NOT NULL THEN tt.member_id END,
       CASE WHEN z.st = 'submitted' THEN z.sub_at + CASE z.pri WHEN 'urgent' THEN interval '2 hours'
                                                             ELSE interval '24 hours' END END,
       z.sub_at, z.acc_at, z.arr_at, z.comp_at, z.clo_at, z.created,
       GREATEST(z.created, z.sub_at, z.acc_at, z.arr_at, z.comp_at, z.clo_at)
  FROM z
  JOIN b_inst a ON a.id = z.app
  JOIN b_inst tt ON tt.id = z.tgt
  JOIN b_patient p ON p.k = z.g % :patients
"""

HISTORY_CREATED = (
    "CAST(:now AS timestamptz) - make_interval(secs => :span * (2 - sqrt(1 + 3 * (g - 1)::float8 / :n)) + r_t0_jitter)"
)
# States by age: the old are settled, the last weeks hold the live ones.
HISTORY_STATE = """CASE
  WHEN age >= 30 THEN CASE WHEN r_state < 0.86 THEN 'closed' WHEN r_state < 0.90 THEN 'cancelled'
       WHEN r_state < 0.92 THEN 'rejected' WHEN r_state < 0.93 THEN 'expired' WHEN r_state < 0.945 THEN 'no_show'
       ELSE 'completed' END
  WHEN age >= 7 THEN CASE WHEN r_state < 0.40 THEN 'closed' WHEN r_state < 0.65 THEN 'completed'
       WHEN r_state < 0.75 THEN 'in_treatment' WHEN r_state < 0.80 THEN 'arrived' WHEN r_state < 0.85 THEN 'scheduled'
       WHEN r_state < 0.90 THEN 'cancelled' WHEN r_state < 0.95 THEN 'rejected' WHEN r_state < 0.97 THEN 'expired'
       ELSE 'no_show' END
  ELSE CASE WHEN r_state < 0.03 THEN 'draft' WHEN r_state < 0.28 THEN 'submitted' WHEN r_state < 0.43 THEN 'accepted'
       WHEN r_state < 0.68 THEN 'scheduled' WHEN r_state < 0.78 THEN 'arrived' WHEN r_state < 0.88 THEN 'in_treatment'
       WHEN r_state < 0.93 THEN 'completed' WHEN r_state < 0.97 THEN 'rejected' ELSE 'cancelled' END
END"""


def _patients(count: int) -> list[dict]:
    """`count` valid patient snapshots encrypted with the app's keys (in an app context)."""
    from mini_apps.family_doctor import idcard
    from mini_apps.referral import service
    from workbench import privacy

    keys = privacy.keyring()
    rows = []
    for k in range(count):
        born = dt.date(1935, 1, 1) + dt.timedelta(days=(k * 7919) % (60 * 365))
        number = idcard.make("330203", born, k % 999 + 1)
        sex = idcard.parse(number, dt.date.today()).sex
        phone = f"13{(k * 104729) % 10**9:09d}"
        name = SURNAMES[k % len(SURNAMES)] + GIVEN[(k * 2) % (len(GIVEN) - 1) : (k * 2) % (len(GIVEN) - 1) + 2]
        clinical = {
            "chief_complaint": "头晕乏力2周",
            "present_illness": "血压控制不佳",
            "medications": "氨氯地平 5mg qd",
        }
        rows.append(
            {
                "k": k,
                "name": name,
                "id_hash": privacy.lookup_hash(number, keys, context=service.ID_CONTEXT),
                "id_cipher": privacy.encrypt_field(number, keys, context=service.ID_CONTEXT),
                "id_masked": privacy.mask_id_number(number),
                "sex": sex,
                "birth": born,
                "phone_cipher": privacy.encrypt_field(phone, keys, context=service.PHONE_CONTEXT),
                "phone_masked": privacy.mask_mobile(phone),
                "clinical": privacy.encrypt_field(
                    json.dumps(clinical, ensure_ascii=False), keys, context=service.CLINICAL_CONTEXT
                ),
            }
        )
    return rows


def generate_history(env: dict[str, str], world: World, count: int, pool: int, chunk: int = 250_000) -> dict:
    """`count` referrals of history plus `pool` submitted ones into the hospital (see the module docstring)."""
    import sqlalchemy as sa

    from mini_apps.referral import icd10

    app = make_app(env, LOG_LEVEL="WARNING")
    engine = app.extensions["workbench.db"].engine
    dx = [icd10.lookup(code) for code in DIAGNOSES]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with app.app_context():
        patients = _patients(max(50, count // 2000))
    timings["patients"] = time.perf_counter() - started
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT setseed(0.7)"))
        for statement in CATALOG_SQL.split(";\n"):
            if statement.strip():
                conn.execute(sa.text(statement), {"hospital": world.hospital_id} if ":hospital" in statement else {})
        conn.execute(
            sa.text(
                "INSERT INTO b_patient VALUES (:k, :name, :id_hash, :id_cipher, :id_masked, :sex, :birth, "
                ":phone_cipher, :phone_masked, :clinical)"
            ),
            patients,
        )
        lanes = conn.scalar(sa.text("SELECT count(*) FROM b_lane"))
        institutions = conn.scalar(sa.text("SELECT count(*) FROM b_inst"))
        params = {
            "now": now,
            "n": count,
            "span": YEARS * 365 * 86400,
            "dx_codes": [d.code for d in dx],
            "dx_names": [d.name for d in dx],
            "dx_n": len(dx),
            "patients": len(patients),
        }
        history = HISTORY_SQL.format(
            created=HISTORY_CREATED.replace("r_t0_jitter", "random() * 600"), lanes="b_lane", state=HISTORY_STATE
        )
        # Secondary indexes are dropped for the load and rebuilt after it, from their own definitions (faster than
        # maintaining a dozen of them row by row); constraints' indexes stay.
        indexes = conn.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'referrals' AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = 'referrals'::regclass)"
            )
        ).all()
        for name, _ in indexes:
            conn.execute(sa.text(f'DROP INDEX "{name}"'))
        started = time.perf_counter()
        for g0 in range(1, count + 1, chunk):
            g1 = min(count, g0 + chunk - 1)
            conn.execute(sa.text(history), {**params, "g0": g0, "g1": g1})
            conn.commit()
            print(f"  … {g1:,} referrals ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        timings["history"] = time.perf_counter() - started
        # The accept pool: submitted in the last two days.
        started = time.perf_counter()
        pooled = HISTORY_SQL.format(
            created="CAST(:now AS timestamptz) - make_interval(secs => 172800 * random())",
            lanes="b_pool_lane",
            state="'submitted'",
        ).replace("r_pri < 0.03 AND", "false AND")  # green ones would be accepted at submit
        if pool:
            conn.execute(sa.text(pooled), {**params, "g0": count + 1, "g1": count + pool})
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('referrals', 'id'), (SELECT max(id) FROM referrals))")
        )
        conn.commit()
        timings["pool"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(sa.text("SET maintenance_work_mem = '256MB'"))
        for _, definition in indexes:
            conn.execute(sa.text(definition))
        conn.commit()
        timings["indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE referrals"))
    timings["vacuum_analyze"] = time.perf_counter() - started
    with engine.connect() as conn:
        facts = {
            "total": conn.scalar(sa.text("SELECT count(*) FROM referrals")),
            "institutions": institutions,
            "indexes": len(indexes),
            "lanes": lanes,
            "patients": len(patients),
            "table_mb": conn.scalar(sa.text("SELECT pg_total_relation_size('referrals')")) / 2**20,
            "heap_mb": conn.scalar(sa.text("SELECT pg_relation_size('referrals')")) / 2**20,
            "by_direction": dict(conn.execute(sa.text("SELECT direction, count(*) FROM referrals GROUP BY 1")).all()),
            "pool_before": conn.scalar(
                sa.text("SELECT count(*) FROM referrals WHERE target_institution_id = :h AND state = 'submitted'"),
                {"h": world.hospital_id},
            ),
            "inbox_rows": conn.scalar(
                sa.text("SELECT count(*) FROM referrals WHERE target_institution_id = :h"), {"h": world.hospital_id}
            ),
            "outbox_rows": conn.scalar(
                sa.text("SELECT count(*) FROM referrals WHERE applicant_institution_id = :i"),
                {"i": world.doctor_institution_id},
            ),
            "doctor_inbox_rows": conn.scalar(
                sa.text("SELECT count(*) FROM referrals WHERE target_institution_id = :i"),
                {"i": world.doctor_institution_id},
            ),
            "timings": timings,
        }
    close_app(app)
    return facts


BUILD_TABLE = "bench_referral_build"


def _build_params(args: argparse.Namespace) -> dict:
    return {"referrals": args.referrals, "accept_pool": args.accept_pool, "scale": args.scale}


def store_build(engine, args: argparse.Namespace, facts: dict) -> None:
    """Remember what the history is (its size, scale and facts), so `--reuse` can skip the minutes it takes."""
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {BUILD_TABLE} (params jsonb, facts jsonb)"))
        conn.execute(sa.text(f"DELETE FROM {BUILD_TABLE}"))
        conn.execute(
            sa.text(f"INSERT INTO {BUILD_TABLE} VALUES (CAST(:p AS jsonb), CAST(:f AS jsonb))"),
            {"p": json.dumps(_build_params(args)), "f": json.dumps(facts, default=str)},
        )


def stored_build(engine, args: argparse.Namespace) -> dict | None:
    """The facts of the history an earlier run built with the same parameters, or None."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        if not conn.scalar(sa.text(f"SELECT to_regclass('{BUILD_TABLE}') IS NOT NULL")):
            return None
        row = conn.execute(sa.text(f"SELECT params, facts FROM {BUILD_TABLE}")).first()
    if row is None or row.params != _build_params(args):
        return None
    return row.facts


def restore_build(engine, args: argparse.Namespace) -> None:
    """Undo an earlier run's rounds: the referrals its creates added go, the accept pool is submitted again (as
    generated: no events, the acceptance clock from submission)."""
    import sqlalchemy as sa

    history, last = args.referrals, args.referrals + args.accept_pool
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM referrals WHERE id > :last"), {"last": last})
        conn.execute(sa.text("DELETE FROM referral_events WHERE referral_id > :h"), {"h": history})
        conn.execute(
            sa.text(
                "UPDATE referrals SET state = 'submitted', accepted_at = NULL, accepted_by_member_id = NULL, "
                "slot_id = NULL, reminded_at = NULL, escalated_at = NULL, respond_by = submitted_at + CASE priority "
                "WHEN 'urgent' THEN interval '2 hours' ELSE interval '24 hours' END "
                "WHERE id > :h AND state <> 'submitted'"
            ),
            {"h": history},
        )
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('referrals', 'id'), :last)"), {"last": last})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE referrals"))


# --- load with a distinct request each time ---------------------------------------------------------------------

# The calls' loop (wrk with a Lua script, or the Python client) is bench/api_load.py's `wrk_calls` / `python_calls`.


# --- what is measured -------------------------------------------------------------------------------------------


@dataclass
class Writer:
    """A POST target: `calls(round)` gives that round's distinct requests."""

    label: str
    member: Member
    make: object  # callable(int) -> list[Call]
    statements: float = 0.0
    solo_ms: float = 0.0
    body_bytes: int = 0


def create_calls(world: World, offset: int, count: int) -> list[Call]:
    """Up-referrals from the township doctor to the hospital: a distinct valid patient each, the hospital's
    departments in turn, mostly routine with some urgent ones."""
    from mini_apps.family_doctor import idcard

    calls = []
    for i in range(offset, offset + count):
        born = dt.date(1940, 1, 1) + dt.timedelta(days=(i // 999) % (50 * 365))
        body = {
            "direction": "up",
            "mode": "outpatient" if i % 3 else "inpatient",
            "priority": "urgent" if i % 10 == 0 else "routine",
            "submit": True,
            "applicant_department_id": world.doctor_department_id,
            "target_institution_id": world.hospital_id,
            "target_department_id": world.hospital_departments[i % len(world.hospital_departments)],
            "reason_code": "further_care",
            "reason_text": "血压控制不佳，需进一步诊治",
            "patient": {
                "name": SURNAMES[i % len(SURNAMES)]
                + GIVEN[(i * 2) % (len(GIVEN) - 1) : (i * 2) % (len(GIVEN) - 1) + 2],
                "id_number": idcard.make("330281", born, i % 999 + 1),
                "phone": f"139{i % 10**8:08d}",
            },
            "consent": True,
            "primary_diagnosis": {"code": DIAGNOSES[i % len(DIAGNOSES)]},
            "secondary_diagnoses": [{"code": "E11.9"}] if i % 4 == 0 else [],
            "clinical": {"chief_complaint": "头晕2周", "present_illness": "血压波动在170/100左右", "allergies": "无"},
        }
        calls.append(Call("POST", "/api/referrals", json.dumps(body, ensure_ascii=False)))
    return calls


def accept_calls(engine, world: World) -> list[Call]:
    """Every referral still waiting at the hospital, newest first: each accept is made once."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        ids = conn.scalars(
            sa.text(
                "SELECT id FROM referrals WHERE target_institution_id = :h AND state = 'submitted' ORDER BY id DESC"
            ),
            {"h": world.hospital_id},
        ).all()
    return [Call("POST", f"/api/referrals/{i}/actions/accept", "{}") for i in ids]


def profile(env: dict[str, str], jobs: list[tuple[Target | Writer, str | None, list[Call]]]) -> None:
    """SQL statements and time per request, one request at a time in-process (test client), request logging on
    as under gunicorn: bench/api.py's count_statements for reads and writes alike, with fewer requests (its 225 per
    endpoint take minutes on a list that scans a million rows): 5 to warm up, the rest timed (mean)."""
    import sqlalchemy as sa

    app = make_app(env)
    app.add_url_rule("/_bench/constant", "bench_constant", lambda: {"status": "ok", "bench": "constant"})
    client = app.test_client()
    seen = [0]
    sa.event.listen(
        app.extensions["workbench.db"].engine, "before_cursor_execute", lambda *a: seen.__setitem__(0, seen[0] + 1)
    )
    for target, token, calls in jobs:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        warm, timed = calls[:5], calls[5:]
        for call in warm:
            client.open(call.path, method=call.method, data=call.body or None, headers=headers)
        seen[0] = 0
        started = time.perf_counter()
        for call in timed:
            reply = client.open(call.path, method=call.method, data=call.body or None, headers=headers)
            if reply.status_code >= 300:
                raise SystemExit(f"{target.label}: {reply.status_code} {reply.get_data(as_text=True)[:300]}")
            target.body_bytes = len(reply.data)
        target.solo_ms = (time.perf_counter() - started) / len(timed) * 1000
        target.statements = seen[0] / len(timed)
    close_app(app)


# What the coordinator's inbox counts cost before the arms were made disjoint (the service until issue 7's fix): one
# OR over every arm of the receiving side, overlapping ones included, which PostgreSQL could only answer by reading
# the whole table (Parallel Seq Scan, ~190 ms at 1,020,000 referrals, run twice per request: counts, then total).
BEFORE_SQL = """
SELECT state, count(*) FROM referrals
 WHERE state <> 'draft' AND (
   target_institution_id IN (%(h)s)
   OR (target_department_id IN (SELECT id FROM org_nodes WHERE path LIKE %(p)s) AND target_institution_id IN (%(h)s))
   OR (target_department_id IS NULL AND target_institution_id IN (%(h)s))
   OR target_member_id = %(m)s)
 GROUP BY state
"""


def explain_lists(
    env: dict[str, str], readers: list[Target], out: Path, sketches: list[tuple[str, str, str, dict]] = ()
) -> list[dict]:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement on `referrals` one list request runs (captured with their
    parameters from an in-process request, then explained on the same database), then of `sketches` (label,
    kind, SQL, parameters). Full plans go to `out`."""
    import sqlalchemy as sa

    app = make_app(env, LOG_LEVEL="WARNING")
    engine = app.extensions["workbench.db"].engine
    client = app.test_client()
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if re.search(r"\bFROM referrals\b", statement) and statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    summary = []
    with out.open("w") as plans:
        runs: list[tuple[str, str | None, str, object]] = []
        for target in readers:
            headers = {"Authorization": f"Bearer {target.token}"}
            client.get(target.path, headers=headers)  # warm
            captured.clear()
            sa.event.listen(engine, "before_cursor_execute", capture)
            client.get(target.path, headers=headers)
            sa.event.remove(engine, "before_cursor_execute", capture)
            runs += [(target.label, None, statement, parameters) for statement, parameters in captured]
        runs += list(sketches)
        for label, kind, statement, parameters in runs:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                for _ in range(2):  # the second run, with the pages the first one read cached
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plan = [row[0] for row in cursor.fetchall()]
            finally:
                raw.close()
            kind = kind or (
                "count by state (total from it)"
                if "GROUP BY" in statement
                else "total"
                if "count(*)" in statement
                else "page"
            )
            steps = [re.sub(r"\s+\(cost=.*", "", line).strip(" ->") for line in plan if "(cost=" in line]
            top = steps[0]
            nodes = list(dict.fromkeys(s for s in steps[1:] if "referrals" in s or s == "BitmapOr"))
            ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan[-1]).group(1))
            summary.append({"target": label, "query": kind, "top": top, "scans": nodes, "ms": ms})
            plans.write(f"-- {label}: {kind}\n{statement}\n{parameters}\n" + "\n".join(plan) + "\n\n")
    close_app(app)
    return summary


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def wait_idle(server: Gunicorn, engine, timeout: float = 120.0) -> float:
    """Wait until gunicorn's workers use under 5 % of a CPU over half a second and PostgreSQL runs no other
    statement; returns the seconds waited (the timeout at most)."""
    import sqlalchemy as sa

    started = time.monotonic()
    pids = [server.proc.pid, *_children(server.proc.pid)]
    while time.monotonic() - started < timeout:
        before = _cpu_seconds(pids)
        time.sleep(0.5)
        busy = _cpu_seconds(pids) - before
        with engine.connect() as conn:
            active = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            )
        if busy < 0.025 and not active:
            break
    return time.monotonic() - started


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s while the rounds run."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(5):
            self.samples.append(os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--referrals", type=int, default=1_000_000, help="rows of history (default 1,000,000)")
    parser.add_argument("--accept-pool", type=int, default=20_000, help="submitted referrals for the accept load")
    parser.add_argument("--scale", default="city", help="sandbox scale (default city)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per target (median reported)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if wrk is there")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of docs/BENCHMARKS.md")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the history an earlier run left in the bench's database when it has the same size and scale "
        "(rows created by earlier rounds deleted, the accept pool set back to submitted); built afresh otherwise",
    )
    parser.add_argument("--out", type=Path, help="also write the section to this file")
    args = parser.parse_args()

    use_wrk = not args.python_client and have_wrk()
    print("starting PostgreSQL and Redis", file=sys.stderr)
    database_url, redis_url = start_services(SERVICES)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-referral-"))
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WORKBENCH_VAR_DIR": str(var_dir),
        "ACCESS_TOKEN_SECONDS": "7200",  # outlive the run
        "ORG_SYNC_RECONCILE_SECONDS": "0",
    }
    with SandboxProcess("--scale", args.scale, "--seed", "1", "--qps", "1000000") as sandbox:
        env["SANDBOX_PORT"] = str(sandbox.port)
        import sqlalchemy as sa

        engine = sa.create_engine(database_url)
        world = pick_world(sandbox)
        facts = stored_build(engine, args) if args.reuse else None
        if facts is not None:
            print(f"sandbox ({args.scale} scale) on {sandbox.url}; reusing the stored history", file=sys.stderr)
            from tests.conftest import migrate

            migrate(database_url)  # the code may have migrations the stored schema lacks
            node_ids(engine, world)
            restore_build(engine, args)
        else:
            print(f"sandbox ({args.scale} scale) on {sandbox.url}; syncing the tree", file=sys.stderr)
            seed_tree_by_sync(env)
            node_ids(engine, world)
            print(f"generating {args.referrals:,} referrals (+{args.accept_pool:,} for accepts)", file=sys.stderr)
            facts = generate_history(env, world, args.referrals, args.accept_pool)
            store_build(engine, args, facts)
        print(f"  {json.dumps(facts, default=str, ensure_ascii=False)}", file=sys.stderr)

        with Gunicorn(env, var_dir / "gunicorn.log") as server:
            workers = len(_children(server.proc.pid))
            grant_coordinator(server, sandbox, world)
            for member in (world.coordinator, world.doctor):
                member.token = sign_in(server, sandbox, member)
            readers = [
                Target("constant (bare Flask)", "/_bench/constant", None),
                Target("inbox · hospital coordinator", "/api/referrals?box=inbox", world.coordinator.token),
                Target("outbox · township doctor", "/api/referrals?box=outbox", world.doctor.token),
                # Down-referrals to the township hospital: the inbox of most institutions, small but in a big table.
                Target("inbox · township doctor", "/api/referrals?box=inbox", world.doctor.token),
            ]
            for target in readers:
                headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
                reply = requests.get(server.url + target.path, headers=headers, timeout=30)
                if reply.status_code != 200:
                    raise SystemExit(f"{target.path}: {reply.status_code} {reply.text[:300]}")
                target.body_bytes = len(reply.content)
                if target.token:
                    print(f"  {target.label}: total {reply.json()['total']:,}", file=sys.stderr)
            with engine.connect() as conn:
                coordinator_id, position = conn.execute(
                    sa.text(
                        "SELECT m.id, n.path FROM org_members m JOIN org_memberships p ON p.member_id = m.id "
                        "JOIN org_nodes n ON n.id = p.node_id WHERE m.userid = :u ORDER BY n.id LIMIT 1"
                    ),
                    {"u": world.coordinator.userid},
                ).one()
            before = (
                "inbox · hospital coordinator",
                "before: count by state, one OR over overlapping arms (run twice per request: counts, total)",
                BEFORE_SQL,
                {"h": world.hospital_id, "m": coordinator_id, "p": position + "%"},
            )
            explained = explain_lists(env, readers[1:], var_dir / "plans.txt", [before])
            for row in explained:
                print(f"  EXPLAIN {row['target']} · {row['query']}: {row['ms']:.1f} ms {row['scans']}", file=sys.stderr)

            created = [0]

            def creates(_: int) -> list[Call]:
                calls = create_calls(world, created[0], 5000)
                created[0] += 5000
                return calls

            writers = [
                Writer("create (submit) · township doctor", world.doctor, creates),
                Writer("accept · hospital coordinator", world.coordinator, lambda _: accept_calls(engine, world)),
            ]
            jobs = [(t, t.token, [Call("GET", t.path)] * 25) for t in readers]
            jobs += [(w, w.member.token, w.make(0)[:25]) for w in writers]
            # In-process request logs go to sys.stderr whatever the handler's stream: silenced here.
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                profile(env, jobs)

            def run(target: Target | Writer, seconds: float) -> Result:
                round_args = argparse.Namespace(**{**vars(args), "seconds": seconds})
                if isinstance(target, Target):
                    return measure(server, target, round_args, use_wrk)
                headers = {"Authorization": f"Bearer {target.member.token}"}
                calls = target.make(0)
                if use_wrk:
                    return wrk_calls(
                        server.url, headers, calls, args.connections, args.threads, round_args.seconds, var_dir
                    )
                return python_calls(server.url, headers, calls, args.connections, round_args.seconds)

            print(f"gunicorn: {workers} workers × {os.environ.get('WEB_THREADS', '8')} threads", file=sys.stderr)
            targets: list[Target | Writer] = [*readers, *writers]
            for target in targets:  # warm every worker's pool and caches
                run(target, 2)
                wait_idle(server, engine)
            load_before = os.getloadavg()[0]
            sampler = LoadSampler()
            sampler.start()
            results: dict[str, list[Result]] = {t.label: [] for t in targets}
            drains: list[float] = []
            for round_no in range(args.rounds):
                order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
                for target in order:
                    # A slow list leaves queued requests behind when the client stops: measuring the next target
                    # on a server still busy with them would charge it for them.
                    drains.append(wait_idle(server, engine))
                    result = run(target, args.seconds)
                    results[target.label].append(result)
                    print(
                        f"  round {round_no + 1} {target.label:<36} {result.rps:>8,.1f} rps  "
                        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                        file=sys.stderr,
                    )
            sampler.stop.set()
            load_after = os.getloadavg()[0]
            with engine.connect() as conn:
                facts["after"] = dict(
                    conn.execute(
                        sa.text("SELECT state, count(*) FROM referrals WHERE target_institution_id = :h GROUP BY 1"),
                        {"h": world.hospital_id},
                    ).all()
                )
                facts["total_after"] = conn.scalar(sa.text("SELECT count(*) FROM referrals"))
        engine.dispose()

    load = (load_before, max(sampler.samples or [load_after]), load_after)
    facts["drains"] = drains
    report = render(targets, results, world, facts, explained, workers, use_wrk, args, load)
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    if args.write:
        write_section(report, HEADING, keep_from="Notes (by hand")
        print(f"wrote the Referral section of docs/BENCHMARKS.md (plans in {var_dir / 'plans.txt'})", file=sys.stderr)


def _middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def render(targets, results, world: World, facts: dict, explained, workers, use_wrk, args, load) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    client = (
        f"wrk {args.threads} threads, {args.connections} keep-alive connections (a Lua script gives each POST its "
        "own body or path)"
        if use_wrk
        else f"Python client, {args.connections} processes with keep-alive connections"
    )
    base = _median(results[targets[0].label])
    t = facts["timings"]
    lines = [
        HEADING,
        "",
        f"Measured {now} on {os.cpu_count()} CPUs (nproc) · Python {platform.python_version()} · "
        f"{platform.platform()} · PostgreSQL + Redis (private test services) · gunicorn gthread, {workers} workers × "
        f"{os.environ.get('WEB_THREADS', '8')} threads (gunicorn.conf.py) · load: {client}, on the same machine · "
        f"1-minute load average {load[0]:.1f} before the rounds, {load[1]:.1f} at most during them, {load[2]:.1f} "
        "after (the machine is shared: other engineers' test runs included) · before each measurement the bench "
        "waits for gunicorn and PostgreSQL to go idle "
        f"(median wait {_middle(facts.get('drains') or [0]):.1f} s, longest {max(facts.get('drains') or [0]):.1f} s).",
        "",
        "Reproduce:",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        f"### History: {facts['total']:,} referrals ({args.scale} scale, {facts['institutions']} institutions)",
        "",
        f"{args.referrals:,} referrals over {YEARS} years (volume rising to twice the first year's) across every "
        f"医共体 of the sandbox's {args.scale}, plus {args.accept_pool:,} submitted ones into the measured hospital "
        "for the accept load; by direction "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(facts["by_direction"].items()))
        + f"; {facts['patients']:,} distinct encrypted patient snapshots; table with indexes "
        f"{facts['table_mb']:,.0f} MB (heap {facts['heap_mb']:,.0f} MB). Generated set-based in PostgreSQL in "
        f"{t['history']:.0f} s (+{t['pool']:.0f} s pool, {t['indexes']:.0f} s rebuilding the {facts['indexes']} "
        f"secondary indexes dropped for the load, {t['vacuum_analyze']:.0f} s VACUUM ANALYZE). Measured "
        f"hospital: {world.hospital_name} ({world.member_institutions} member institutions), "
        f"{facts['inbox_rows']:,} referrals addressed to it; the township doctor's institution applied for "
        f"{facts['outbox_rows']:,} and received {facts['doctor_inbox_rows']:,}.",
        "",
        f"### Lists and writes against a bare endpoint ({args.rounds} rounds × {args.seconds:g} s, median round)",
        "",
        f"Members signed in through a sandbox free-login code: {world.coordinator.label} {world.coordinator.name} "
        f"({world.coordinator.unit}; `referral_coordinator` granted on the hospital by the county administrator); "
        f"{world.doctor.label} {world.doctor.name} ({world.doctor.title}, {world.doctor.unit}). Lists are the "
        "first page (20, newest first) with `total` and the counts by state. Create = `POST /api/referrals` with "
        "`submit` (a hand-entered patient with a distinct valid ID number each; cards queued to the receiving side); "
        "accept = `POST /api/referrals/<id>/actions/accept` without a slot, each submitted referral once. "
        "Ratio = rps / constant rps; `alone ms` = one request at a time in-process (test client, mean of 20 after 5); "
        "`SQL / request` counts statements sent to PostgreSQL.",
        "",
        "| endpoint | body bytes | SQL / request | alone ms | rps | ratio | p50 ms | p99 ms | p99 / constant p99 "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        r = _median(results[target.label])
        lines.append(
            f"| {target.label} | {target.body_bytes:,} | {target.statements:g} | {target.solo_ms:.2f} | "
            f"{r.rps:,.1f} | {r.rps / base.rps:.3f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p99_ms / base.p99_ms:.2f} "
            f"| {r.errors} |"
        )
    spread = {t.label: (min(x.rps for x in results[t.label]), max(x.rps for x in results[t.label])) for t in targets}
    lines += [
        "",
        "Round-to-round rps range: "
        + "; ".join(f"{label} {lo:,.1f}–{hi:,.1f}" for label, (lo, hi) in spread.items())
        + ".",
        "",
        f"During the rounds (warm-ups included) {facts['total_after'] - facts['total']:,} referrals were created and "
        f"the hospital's submitted ones went from {facts['pool_before']:,} to {facts['after'].get('submitted', 0):,}.",
        "",
        "EXPLAIN (ANALYZE, BUFFERS) of the list's statements on `referrals` before the rounds (second run of each, "
        "pages cached):",
        "",
        "| list | statement | plan | scans of referrals | ms |",
        "|---|---|---|---|---:|",
    ]
    for row in explained:
        lines.append(
            f"| {row['target']} | {row['query']} | {row['top']} | {', '.join(row['scans'])} | {row['ms']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
