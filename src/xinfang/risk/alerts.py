"""红黄蓝 warnings from the model's findings, each addressed to a department, and their follow-up.

Three kinds of evidence raise a warning (thresholds and wording in the rules file):

* ``hotspot``: an emerging cluster of similar complaints about one place,
  company or community (`xinfang.risk.hotspots`);
* ``surge``: a domain's count in a district (or the city) this month above the
  upper bound of the interval forecast made before the month began (the
  backtest point of `xinfang.risk.forecast` for this month), by a ratio;
* ``outlook``: next month's forecast well above the same month last year, with
  even the lower end of its 80 % interval above last year's count: the coming
  peak the bureau wants to hear about while there is time to act.

Noise control: a top-level category does not warn where one of the narrower
configured domains inside it already warns for the same area at the same level
or higher, and the whole city does not warn for a domain when a district does
at the same level or higher (the district warning is the actionable one).

Each warning carries a key that is stable from month to month (rule + domain +
area, or the hotspot's key), so next month's follow-up finds it again: gone
(已消除), lower (降级), same (持续) or higher (升级).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

from xinfang.risk import forecast
from xinfang.risk.rules import LEVELS, Rules, WarningRule

CITY_CODE = forecast.CITY_CODE
ALL_DISTRICT_GOVERNMENTS = "各区县人民政府"

OUTCOMES = ("已消除", "降级", "持续", "升级")


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str  # hotspot | surge | outlook
    level: str  # 红 | 黄 | 蓝
    title: str
    evidence: str
    action: str
    department_code: str
    department_name: str
    co_department_code: str | None
    co_department_name: str
    district_code: str | None
    district_name: str | None
    town_names: str
    domain: str
    subject: str
    metric: float
    case_count: int
    hotspot_key: str | None = None

    @property
    def rank(self) -> int:
        return LEVELS[self.level]

    def departments(self) -> tuple[str, ...]:
        return tuple(c for c in (self.department_code, self.co_department_code) if c)


@dataclass(frozen=True)
class FollowUp:
    key: str
    title: str
    department_code: str
    department_name: str
    co_department_code: str | None
    previous_level: str
    current_level: str | None
    outcome: str  # one of OUTCOMES


@dataclass
class Directory:
    """Department names by code (dim_department)."""

    names: Mapping[str, str]
    extra: dict[str, str] = field(default_factory=dict)

    def name(self, code: str | None) -> str:
        if code is None:
            return ALL_DISTRICT_GOVERNMENTS
        return self.names.get(code) or self.extra.get(code) or code

    @staticmethod
    def district_government(district_code: str | None) -> str | None:
        """The district's government; None (every district government) for the whole city."""
        return None if not district_code or district_code == CITY_CODE else f"QX{district_code}"


def _level(rule: WarningRule, facts: Mapping[str, Any]) -> str | None:
    """The highest level all of whose conditions the facts meet."""
    for lr in rule.levels:
        ok = True
        for name, wanted in lr.conditions.items():
            if name == "above":
                ok = facts["actual"] > facts[wanted]
            elif name == "min_excess":  # how far beyond the level's interval bound
                ok = facts["actual"] >= wanted * facts[lr.conditions.get("above", "hi95")]
            elif name.startswith("min_"):
                ok = facts[name[4:]] >= wanted
            if not ok:
                break
        if ok:
            return lr.level
    return None


def _in_domains(rows: Iterable[Mapping[str, Any]], rule: WarningRule) -> Iterable[Mapping[str, Any]]:
    """The rows of the domains a rule is restricted to (all when the rule names none)."""
    keys = rule.settings.get("domains")
    return (r for r in rows if keys is None or r["domain_key"] in keys)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def surge_alerts(rows: Iterable[Mapping[str, Any]], rules: Rules, directory: Directory) -> list[Alert]:
    """rows: domain_key, domain_name, category_prefix, area_code, area_name, actual, mean, hi80, hi95."""
    rule = rules.rules.get("surge")
    if rule is None:
        return []
    out = []
    for r in _in_domains(rows, rule):
        actual, mean = float(r["actual"] or 0), float(r["mean"] or 0)
        if actual < rule.settings.get("min_cases", 0):
            continue
        facts = {
            **{k: float(r[k]) for k in ("hi80", "hi95")},
            "actual": actual,
            "ratio": actual / mean if mean > 0 else float("inf"),
        }
        level = _level(rule, facts)
        if level is None:
            continue
        out.append(
            _domain_alert(
                "surge",
                level,
                r,
                rule,
                rules,
                directory,
                metric=facts["ratio"],
                case_count=int(actual),
                evidence=(
                    f"本月{r['area_name']}{r['domain_name']}类诉求{_fmt(actual)}件，"
                    f"月初预测{_fmt(mean)}件（95%预测区间上限{_fmt(float(r['hi95']))}件），"
                    f"实际为预测值的{facts['ratio']:.1f}倍。"
                ),
                title=f"{r['area_name']}{r['domain_name']}诉求激增",
            )
        )
    return out


def outlook_alerts(rows: Iterable[Mapping[str, Any]], rules: Rules, directory: Directory) -> list[Alert]:
    """rows: domain_key, domain_name, category_prefix, area_code, area_name, target_month, mean, last_year."""
    rule = rules.rules.get("outlook")
    if rule is None:
        return []
    out = []
    for r in _in_domains(rows, rule):
        mean, last_year = float(r["mean"] or 0), float(r["last_year"] or 0)
        if mean < rule.settings.get("min_cases", 0):
            continue
        # The rise must exceed the model's own uncertainty: even the interval's low end is above last year.
        if float(r["lo80"] or 0) <= last_year:
            continue
        ratio = mean / last_year if last_year > 0 else float("inf")
        level = _level(rule, {"ratio": ratio})
        if level is None:
            continue
        month = r["target_month"]
        out.append(
            _domain_alert(
                "outlook",
                level,
                r,
                rule,
                rules,
                directory,
                metric=ratio,
                case_count=round(mean),
                evidence=(
                    f"预计{month.month}月{r['area_name']}{r['domain_name']}类诉求约{_fmt(mean)}件"
                    f"（80%预测区间{_fmt(float(r['lo80']))}～{_fmt(float(r['hi80']))}件），"
                    f"去年同月{_fmt(last_year)}件。"
                ),
                title=f"{r['area_name']}{r['domain_name']}诉求预计上升",
            )
        )
    return out


def _domain_alert(
    kind: str,
    level: str,
    r: Mapping[str, Any],
    rule: WarningRule,
    rules: Rules,
    directory: Directory,
    *,
    metric: float,
    case_count: int,
    evidence: str,
    title: str,
) -> Alert:
    area = r["area_code"]
    district = None if area == CITY_CODE else area
    department = rules.department_for(r["category_prefix"])
    co = Directory.district_government(district)
    names = {
        "subject": r["domain_name"],
        "district": r["area_name"],
        "towns": r["area_name"],
        "domain": r["domain_name"],
        "department": directory.name(department),
        "co_department": directory.name(co),
    }
    return Alert(
        key=f"{kind}:{r['domain_key']}:{area}",
        kind=kind,
        level=level,
        title=title,
        evidence=evidence,
        action=rule.action(level, **names),
        department_code=department,
        department_name=names["department"],
        co_department_code=co,
        co_department_name=names["co_department"],
        district_code=district,
        district_name=None if district is None else r["area_name"],
        town_names="",
        domain=r["domain_name"],
        subject=r["domain_name"],
        metric=round(metric, 4) if metric != float("inf") else 999.0,
        case_count=case_count,
    )


def hotspot_alerts(rows: Iterable[Mapping[str, Any]], rules: Rules, directory: Directory) -> list[Alert]:
    """rows: risk.hotspots rows of one month."""
    rule = rules.rules.get("hotspot")
    if rule is None:
        return []
    out = []
    for r in rows:
        facts = {
            "cases": r["n_cases"],
            "persons": r["n_persons"],
            "people": r["n_people"],
            "group": r["n_group"],
        }
        level = _level(rule, facts)
        if level is None:
            continue
        towns = "、".join(r["town_names"] or [])
        department = rules.department_for(r["category_code"])
        co = Directory.district_government(r["district_code"])
        names = {
            "subject": r["subject"],
            "district": r["district_name"] or "",
            "towns": towns or (r["district_name"] or ""),
            "domain": r["category_name"] or "",
            "department": directory.name(department),
            "co_department": directory.name(co),
        }
        group = f"，其中集体访{r['n_group']}件" if r["n_group"] else ""
        out.append(
            Alert(
                key=f"hotspot:{r['hotspot_key']}",
                kind="hotspot",
                level=level,
                title=f"{r['district_name']}{towns}“{r['subject']}”相关诉求聚集",
                evidence=(
                    f"{r['first_date']:%-m月%-d日}至{r['last_date']:%-m月%-d日}，{r['district_name']}{towns}"
                    f"出现{r['n_cases']}件内容相近的{r['category_name']}类诉求，涉及{r['n_persons']}名信访人、"
                    f"{r['n_people']}人次{group}；近14日新增{r['recent_cases']}件。"
                ),
                action=rule.action(level, **names),
                department_code=department,
                department_name=names["department"],
                co_department_code=co,
                co_department_name=names["co_department"],
                district_code=r["district_code"],
                district_name=r["district_name"],
                town_names=towns,
                domain=r["category_name"] or "",
                subject=r["subject"],
                metric=float(r["score"] or 0),
                case_count=int(r["n_cases"]),
                hotspot_key=r["hotspot_key"],
            )
        )
    return out


def reduce_noise(alerts: Sequence[Alert], rules: Rules) -> list[Alert]:
    """Drop a top-level category's or the city's warning shadowed by a narrower one (module docstring).

    Only a narrower warning at least as high shadows: a red city-wide surge stays beside a blue
    district one. Follow-up compares with the warnings before this step, so a shadowed warning
    of last month is 持续 (or 升级), not 已消除.
    """
    narrow = {d.key: d.categories for d in rules.domains}
    domain_alerts = [a for a in alerts if a.kind in ("surge", "outlook")]

    def parts(a: Alert) -> tuple[str, str]:
        _, domain_key, area = a.key.split(":")
        return domain_key, area

    keep = []
    for a in alerts:
        if a.kind in ("surge", "outlook"):
            domain_key, area = parts(a)
            peers = [b for b in domain_alerts if b.kind == a.kind and b is not a and b.rank >= a.rank]
            if domain_key.startswith("top_") and any(
                parts(b)[1] == area and any(c.startswith(domain_key[4:]) for c in narrow.get(parts(b)[0], ()))
                for b in peers
            ):
                continue
            if area == CITY_CODE and any(
                parts(b)[0] == domain_key and parts(b)[1] != CITY_CODE for b in peers
            ):
                continue
        keep.append(a)
    return sort_alerts(keep)


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    kinds = {"hotspot": 0, "surge": 1, "outlook": 2}
    return sorted(alerts, key=lambda a: (-a.rank, kinds[a.kind], -a.case_count, a.key))


def follow_up(previous: Sequence[Mapping[str, Any]], current: Sequence[Alert]) -> list[FollowUp]:
    """Last month's warnings against this month's: 已消除, 降级, 持续 or 升级.

    `current` should be every warning raised this month before `reduce_noise`: a warning
    shadowed by a narrower one still stands.
    """
    now = {a.key: a for a in current}
    out = []
    for p in previous:
        a = now.get(p["alert_key"])
        if a is None:
            outcome = "已消除"
        elif a.rank > LEVELS[p["level"]]:
            outcome = "升级"
        elif a.rank < LEVELS[p["level"]]:
            outcome = "降级"
        else:
            outcome = "持续"
        out.append(
            FollowUp(
                key=p["alert_key"],
                title=p["title"],
                department_code=p["department_code"],
                department_name=p["department_name"],
                co_department_code=p["co_department_code"],
                previous_level=p["level"],
                current_level=None if a is None else a.level,
                outcome=outcome,
            )
        )
    order = {o: i for i, o in enumerate(("升级", "持续", "降级", "已消除"))}
    return sorted(out, key=lambda f: (order[f.outcome], -LEVELS[f.previous_level], f.key))


# --------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS risk",
    """
    CREATE TABLE IF NOT EXISTS risk.alerts (
        as_of_month date NOT NULL,
        alert_key text NOT NULL,
        alert_no integer NOT NULL,
        kind text NOT NULL CHECK (kind IN ('hotspot', 'surge', 'outlook')),
        level text NOT NULL CHECK (level IN ('红', '黄', '蓝')),
        level_rank integer NOT NULL,
        title text NOT NULL,
        evidence text NOT NULL,
        action text NOT NULL,
        department_code text NOT NULL,
        department_name text NOT NULL,
        co_department_code text,
        co_department_name text NOT NULL,
        district_code text,
        district_name text,
        town_names text NOT NULL,
        domain text NOT NULL,
        subject text NOT NULL,
        metric numeric NOT NULL,
        case_count integer NOT NULL,
        hotspot_key text,
        PRIMARY KEY (as_of_month, alert_key)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS risk.alert_followups (
        as_of_month date NOT NULL,
        alert_key text NOT NULL,
        title text NOT NULL,
        department_code text NOT NULL,
        department_name text NOT NULL,
        co_department_code text,
        previous_level text NOT NULL,
        current_level text,
        outcome text NOT NULL CHECK (outcome IN ('已消除', '降级', '持续', '升级')),
        PRIMARY KEY (as_of_month, alert_key)
    )
    """,
)


def ensure_tables(conn: psycopg.Connection) -> None:
    for statement in _DDL:
        conn.execute(statement)


def previous_alerts(conn: psycopg.Connection, month: date) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM risk.alerts WHERE as_of_month = (%s::date - interval '1 month')::date "
            "ORDER BY alert_no",
            (month,),
        ).fetchall()


def store(
    conn: psycopg.Connection, month: date, alerts: Sequence[Alert], followups: Sequence[FollowUp]
) -> None:
    """Replace the month's warnings and follow-ups (idempotent)."""
    with conn.transaction():
        ensure_tables(conn)
        conn.execute("DELETE FROM risk.alerts WHERE as_of_month = %s", (month,))
        conn.execute("DELETE FROM risk.alert_followups WHERE as_of_month = %s", (month,))
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO risk.alerts (as_of_month, alert_key, alert_no, kind, level, level_rank, title,
                    evidence, action, department_code, department_name, co_department_code,
                    co_department_name, district_code, district_name, town_names, domain, subject, metric,
                    case_count, hotspot_key)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                [
                    (
                        month,
                        a.key,
                        no,
                        a.kind,
                        a.level,
                        a.rank,
                        a.title,
                        a.evidence,
                        a.action,
                        a.department_code,
                        a.department_name,
                        a.co_department_code,
                        a.co_department_name,
                        a.district_code,
                        a.district_name,
                        a.town_names,
                        a.domain,
                        a.subject,
                        a.metric,
                        a.case_count,
                        a.hotspot_key,
                    )
                    for no, a in enumerate(alerts, start=1)
                ],
            )
            cur.executemany(
                """
                INSERT INTO risk.alert_followups (as_of_month, alert_key, title, department_code,
                    department_name, co_department_code, previous_level, current_level, outcome)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                [
                    (
                        month,
                        f.key,
                        f.title,
                        f.department_code,
                        f.department_name,
                        f.co_department_code,
                        f.previous_level,
                        f.current_level,
                        f.outcome,
                    )
                    for f in followups
                ],
            )


def alert_id(alert: Alert) -> str:
    """A short reference printed in the report (stable for the same key)."""
    return hashlib.sha256(alert.key.encode()).hexdigest()[:6].upper()


def as_dict(alert: Alert) -> dict[str, Any]:
    return asdict(alert) | {"rank": alert.rank}
