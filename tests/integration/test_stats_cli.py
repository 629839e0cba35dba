"""`vaultline stats` and `vaultline report` as an operator types them, against a PostgreSQL
holding the aggregates of the seeded events: the same hand-computed numbers in the table,
the JSON, the CSV and the report."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from tests.integration.analytics_seed import (
    CREATOR,
    D1,
    D2,
    D3,
    EXPECTED_CONVERSION_BY_CATEGORY,
    EXPECTED_REVENUE_BY_KIND,
    EXPECTED_TOP_FANS,
    EXPECTED_TOTALS,
    seed_events,
)
from vaultline.adapters.db.analytics import PostgresAnalyticsStore
from vaultline.handlers import analytics

pytestmark = pytest.mark.integration


@pytest.fixture
async def seeded_db(pool, migrated_db):
    store = PostgresAnalyticsStore(pool)
    for e in seed_events():
        await analytics.handle(e, store=store)
    return migrated_db


def vl(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTLINE_")}
    env |= {"VAULTLINE_DATABASE_URL": db_url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "vaultline", *args], env=env, capture_output=True, text=True, timeout=60)


async def test_stats_json_csv_and_tables_show_the_same_numbers(seeded_db, tmp_path):
    window = ("--creator", CREATOR, "--since", D1.isoformat(), "--until", D3.isoformat(), "--data-dir", str(tmp_path))
    r = vl(seeded_db, "stats", *window, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"] == EXPECTED_TOTALS
    assert data["revenue_by_kind"] == EXPECTED_REVENUE_BY_KIND
    assert {c["key"]: (c["offers"], c["purchases"], c["rate"]) for c in data["conversion_by_category"]} == {
        k: v for k, v in EXPECTED_CONVERSION_BY_CATEGORY.items()
    }
    assert [f["fan_id"] for f in data["top_fans"]] == [f[0] for f in EXPECTED_TOP_FANS]

    r = vl(seeded_db, "stats", *window, "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    by = {(x["section"], x["key"], x["metric"]): x["value"] for x in rows}
    for name, value in EXPECTED_TOTALS.items():
        assert by[("totals", "", name)] == str(value), name
    assert by[("revenue_by_kind", "tip", "revenue_cents")] == "700"
    assert by[("conversion_by_price_band", "$20–49.99", "rate")] == "1.0"
    assert by[("top_fans", "fan_c", "revenue_cents")] == "2800"
    assert by[("daily", D2.isoformat(), "revenue_cents.purchase")] == "6300"

    r = vl(seeded_db, "stats", *window)
    assert r.returncode == 0, r.stderr
    for text in ("$79.99", "60.0%", "Median time to reply", "10.0 min", "lingerie", "fan_c", "$28.00"):
        assert text in r.stdout, text


async def test_stats_refuses_bad_input_clearly(seeded_db, tmp_path):
    for args, message in (
        (("--since", "yesterday"), "--since must be a date"),
        (("--since", "2026-11-05", "--until", "2026-11-01"), "is after until"),
        (("--creator", "Not A Slug"), "--creator must be a creator slug"),
        (("--json", "--csv"), "exclude each other"),
    ):
        r = vl(seeded_db, "stats", *args, "--data-dir", str(tmp_path))
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in " ".join(r.stderr.split()), (args, r.stderr)


async def test_report_for_a_week_as_markdown_and_html(seeded_db, tmp_path):
    md, page = tmp_path / "out" / "week.md", tmp_path / "out" / "week.html"
    for out in (md, page):
        r = vl(seeded_db, "report", "--period", "week", "--date", D2.isoformat(), "--out", str(out),
               "--data-dir", str(tmp_path))  # fmt: skip
        assert r.returncode == 0, r.stderr
    text = md.read_text()
    # 2026-11-03 is in ISO week 45: Monday 11-02 to Sunday 11-08, so D1..D3 are all in it.
    assert text.startswith("# vaultline week report 2026-W45")
    assert "2026-11-02 to 2026-11-08" in text and "generated 20" in text
    assert "| Revenue | $79.99 |" in text and "| Conversion (PPV purchases / offers) | 60.0% |" in text
    assert "| fan_c | @fan_c | 2 | 2 | $28.00 |" in text
    html = page.read_text()
    assert "<svg" in html and "$79.99" in html and "<script" not in html

    r = vl(seeded_db, "report", "--period", "day", "--date", D3.isoformat(), "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "# vaultline day report 2026-11-04" in r.stdout and "| Revenue | $9.99 |" in r.stdout

    r = vl(seeded_db, "report", "--period", "year", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "--period must be day, week or month" in r.stderr


async def test_stats_on_a_database_without_the_analytics_tables(database_url, tmp_path):
    r = vl(database_url, "stats", "--data-dir", str(tmp_path))
    assert r.returncode == 1 and "vaultline migrate" in r.stderr, r.stderr
