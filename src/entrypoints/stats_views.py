"""One `Stats`, many views: terminal tables, CSV, a Markdown or HTML report, and the
server-rendered SVG charts the Stats page and the HTML report share. No I/O."""

from __future__ import annotations

import csv
import html
import io
from datetime import date, timedelta
from typing import Literal

from rich.console import Console
from rich.table import Table

from vaultline.domain.analytics import SALE_KINDS, Stats, flat_rows, money

Period = Literal["day", "week", "month"]


def period_bounds(period: Period, ref: date) -> tuple[date, date, str]:
    """The day, ISO week (Monday..Sunday) or calendar month containing `ref`, and its label."""
    if period == "day":
        return ref, ref, ref.isoformat()
    if period == "week":
        start = ref - timedelta(days=ref.weekday())
        year, week, _ = ref.isocalendar()
        return start, start + timedelta(days=6), f"{year}-W{week:02d}"
    if period == "month":
        start = ref.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return start, nxt - timedelta(days=1), start.strftime("%Y-%m")
    raise ValueError(f"period must be day, week or month, not {period!r}")


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _secs(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _headline(s: Stats) -> list[tuple[str, str]]:
    t = s.totals
    return [
        ("Revenue", money(t.revenue_cents)),
        ("Sales", str(t.sales)),
        ("Purchases", str(t.purchases)),
        ("PPV offers sent", str(t.ppv_offers)),
        ("PPV purchases", str(t.ppv_purchases)),
        ("Conversion (PPV purchases / offers)", _pct(t.conversion)),
        ("Sends (all media sent)", str(t.sends)),
        ("Images generated", str(t.images_generated)),
        ("Images approved", str(t.images_approved)),
        ("Images rejected", str(t.images_rejected)),
        ("Images uploaded", str(t.images_uploaded)),
        ("Upload failures", str(t.upload_failures)),
        ("Crop fallbacks", str(t.crop_fallbacks)),
        ("Crop failures", str(t.crop_failures)),
        ("Fan messages received", str(t.messages_received)),
        ("Replies drafted (flagged)", f"{t.replies_suggested} ({t.replies_flagged})"),
        ("Replies sent", str(t.replies_sent)),
        ("Median time to reply", _secs(t.median_reply_seconds)),
        ("New followers / subscribers", f"{t.fans_followed} / {t.fans_subscribed}"),
    ]


def _sections(s: Stats) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table after the headline: the same in every view."""
    out = [
        ("Funnel", ["stage", "images"], [[f.stage, str(f.count)] for f in s.funnel]),
        ("Revenue by kind", ["kind", "revenue"], [[k, money(v)] for k, v in s.revenue_by_kind.items()]),
        ("Revenue by vault", ["vault", "revenue"], [[k, money(v)] for k, v in s.revenue_by_vault.items()]),
        ("Revenue by category", ["category", "revenue"], [[k, money(v)] for k, v in s.revenue_by_category.items()]),
    ]
    for title, convs in (("Conversion by category", s.conversion_by_category),
                         ("Conversion by price band", s.conversion_by_price_band)):  # fmt: skip
        out.append((title, ["", "offers", "purchases", "conversion"],
                    [[c.key, str(c.offers), str(c.purchases), _pct(c.rate)] for c in convs]))  # fmt: skip
    out.append(("Top content", ["content", "category", "vault", "sends", "purchases", "revenue"],
                [[c.content_id, c.category or "", c.vault or "", str(c.sends), str(c.purchases), money(c.revenue_cents)]
                 for c in s.top_content]))  # fmt: skip
    out.append(("Top fans", ["fan", "handle", "sales", "purchases", "revenue"],
                [[f.fan_id, f.handle or f.display_name or "", str(f.sales), str(f.purchases), money(f.revenue_cents)]
                 for f in s.top_fans]))  # fmt: skip
    out.append(("Per day", ["day", "generated", "approved", "uploaded", "sends", "offers", "purchases", "revenue"],
                [[d.day.isoformat(), str(d.generated), str(d.approved), str(d.uploaded), str(d.sends), str(d.ppv_offers),
                  str(d.purchases), money(d.revenue_cents)] for d in s.daily]))  # fmt: skip
    return out


def scope(s: Stats) -> str:
    return f"{s.creator or 'all creators'}, {s.since.isoformat()} to {s.until.isoformat()} (UTC)"


def print_tables(s: Stats, console: Console) -> None:
    head = Table(title=f"vaultline stats — {scope(s)}", show_header=False)
    head.add_column(style="bold")
    head.add_column(justify="right")
    for k, v in _headline(s):
        head.add_row(k, v)
    console.print(head)
    for title, header, rows in _sections(s):
        if not rows:
            continue
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
        for r in rows:
            table.add_row(*r)
        console.print(table)


def to_csv(s: Stats) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "metric", "value"])
    w.writerows(flat_rows(s))
    return buf.getvalue()


def to_markdown(s: Stats, title: str, generated: str = "") -> str:
    lines = [f"# {title}", "", f"_{scope(s)}_" + (f" — generated {generated}" if generated else ""), "", "| | |",
             "|---|---:|"]  # fmt: skip
    lines += [f"| {k} | {v} |" for k, v in _headline(s)]
    for name, header, rows in _sections(s):
        lines += ["", f"## {name}", ""]
        if not rows:
            lines.append("_nothing in this period_")
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_html(s: Stats, title: str, generated: str = "") -> str:
    """A self-contained report page (inline style only; no script)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:.25em .6em}td+td,th+th{text-align:right}"
        "h2{margin-top:1.5em}</style></head><body>",
        f"<h1>{e(title)}</h1><p><em>{e(scope(s))}</em>{e(f' — generated {generated}' if generated else '')}</p>",
        "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _headline(s)) + "</table>",
        "<h2>Revenue per day</h2>", svg_revenue_per_day(s),
        "<h2>Funnel</h2>", svg_funnel(s),
        "<h2>Conversion by category</h2>", svg_conversion(s),
    ]  # fmt: skip
    for name, header, rows in _sections(s):
        parts.append(f"<h2>{e(name)}</h2>")
        if not rows:
            parts.append("<p><em>nothing in this period</em></p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- SVG charts
# Plain SVG with presentation attributes (no style attribute, no script): allowed by a strict CSP.

KIND_COLOURS = {"purchase": "#3b6fd8", "tip": "#e0a030", "subscription": "#3aa76d", "renewal": "#8e5bd0", "other": "#999999"}
_W, _H, _PAD = 720, 240, 40


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{html.escape(label)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="11">' + "".join(body) + "</svg>")  # fmt: skip


def _text(x: float, y: float, s: str, anchor: str = "start", fill: str = "#333") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}">{html.escape(s)}</text>'


def svg_revenue_per_day(s: Stats) -> str:
    """Revenue per day, one bar per day stacked by sale kind, with a legend."""
    days = s.daily
    if not any(d.revenue_cents for d in days):
        return _svg(_W, 60, [_text(10, 30, "No revenue in this period.")], "revenue per day: none")
    top = max(d.revenue_cents for d in days)
    plot_w, plot_h = _W - 2 * _PAD, _H - 2 * _PAD
    n = len(days)
    bar = plot_w / n
    body = [f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#888"/>',
            _text(_PAD - 4, _PAD + 4, money(top), "end"), _text(_PAD - 4, _H - _PAD, "$0", "end")]  # fmt: skip
    for i, d in enumerate(days):
        y = _H - _PAD
        x = _PAD + i * bar + bar * 0.1
        for kind in SALE_KINDS:
            cents = d.revenue_by_kind.get(kind, 0)
            if not cents:
                continue
            h = plot_h * cents / top
            y -= h
            body.append(f'<rect class="bar kind-{kind}" x="{x:.1f}" y="{y:.1f}" width="{bar * 0.8:.1f}" height="{h:.1f}" '
                        f'fill="{KIND_COLOURS[kind]}"><title>{d.day} {kind}: {money(cents)}</title></rect>')  # fmt: skip
        if n <= 14 or i % max(1, n // 10) == 0:
            body.append(_text(x + bar * 0.4, _H - _PAD + 14, d.day.strftime("%m-%d"), "middle"))
    lx = _PAD
    for kind in SALE_KINDS:
        if any(d.revenue_by_kind.get(kind) for d in days):
            body.append(f'<rect x="{lx}" y="8" width="10" height="10" fill="{KIND_COLOURS[kind]}"/>')
            body.append(_text(lx + 14, 17, kind))
            lx += 100
    return _svg(_W, _H, body, "revenue per day by kind")


def svg_funnel(s: Stats) -> str:
    """Horizontal bars: generated -> approved -> uploaded -> sent -> purchased."""
    top = max((f.count for f in s.funnel), default=0) or 1
    row, left = 34, 110
    body = []
    for i, f in enumerate(s.funnel):
        y = 10 + i * row
        w = (_W - left - 80) * f.count / top
        body.append(_text(left - 8, y + 17, f.stage, "end"))
        body.append(f'<rect class="bar funnel-{f.stage}" x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="#3b6fd8"><title>{f.stage}: {f.count}</title></rect>')  # fmt: skip
        body.append(_text(left + w + 6, y + 17, str(f.count)))
    return _svg(_W, 20 + row * len(s.funnel), body, "funnel")


def svg_conversion(s: Stats) -> str:
    """Conversion by category: one bar per category (purchases / offers), labelled."""
    rows = s.conversion_by_category
    if not rows:
        return _svg(_W, 60, [_text(10, 30, "No PPV offers in this period.")], "conversion by category: none")
    top = max((c.rate or 0) for c in rows) or 1
    row, left = 30, 160
    body = []
    for i, c in enumerate(rows):
        y = 10 + i * row
        w = (_W - left - 160) * (c.rate or 0) / top
        body.append(_text(left - 8, y + 15, c.key, "end"))
        body.append(f'<rect class="bar conversion" x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="#3aa76d"><title>{html.escape(c.key)}: {_pct(c.rate)}</title></rect>')  # fmt: skip
        body.append(_text(left + w + 6, y + 15, f"{_pct(c.rate)}  ({c.purchases}/{c.offers})"))
    return _svg(_W, 20 + row * len(rows), body, "conversion by category")
