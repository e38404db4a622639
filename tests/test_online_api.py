"""The online petition platform's simulated API: auth, paging, window semantics, faults, staff accounts.

The builders at the top are shared with test_ingest_online.py and
test_ingest_staff.py: hand-built petitions and staff accounts with personal
data unique to the run, served through the same server class the
`xinfang sim serve-web` process runs.
"""

from __future__ import annotations

import itertools
import json
import random
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from factories import next_day, unique_name, unique_phone, unique_street

from xinfang.sim.records import Person, Petition, PetitionEvent
from xinfang.sim.web_api import (
    CORRUPTIONS,
    PATH,
    STAFF_CORRUPTIONS,
    STAFF_PATH,
    FaultConfig,
    FaultPlan,
    PetitionAPIServer,
    RecordsProvider,
    StaffProvider,
    StaticProvider,
    WorldProvider,
    corrupt,
    corrupt_staff,
    petition_json,
    staff_snapshot,
    start_in_thread,
)
from xinfang.sim.world import Posting, Staff, TrainingClass

TOKEN = "test-token-" + uuid.uuid4().hex[:8]
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_rng = random.Random(uuid.uuid4().int)
_numbers = itertools.count(1)


def unique_id_number() -> str:
    born = date(1950, 1, 1) + timedelta(days=_rng.randrange(20000))
    first17 = f"369901{born:%Y%m%d}{_rng.randrange(1000):03d}"
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def person(*, id_number: str | None = "", phone: str | None = "") -> Person:
    return Person(
        name=unique_name(3),
        id_number=unique_id_number() if id_number == "" else (id_number or ""),
        phone=unique_phone() if phone == "" else (phone or ""),
        address="江东区东湖街道" + unique_street(),
        region_code="369901001",
    )


def petition(registered: datetime, *later: tuple[str, datetime], **overrides: Any) -> Petition:
    """A petition registered (登记) at `registered`, then the `later` (type, time) events."""
    events = [PetitionEvent(1, "登记", registered, unit_code="XFJ")]
    for seq, (kind, at) in enumerate(later, start=2):
        events.append(
            PetitionEvent(seq, kind, at, unit_code="U36990101", rating="满意" if kind == "回访" else None)
        )
    values: dict[str, Any] = {
        "number": f"WS{uuid.uuid4().hex[:10].upper()}{next(_numbers):04d}",
        "channel": "网上信访",
        "registered_at": registered,
        "petitioner": person(),
        "group_size": 1,
        "category_code": "602001",
        "purpose_code": "03",
        "town_code": "369901001",
        "grid_code": "369901001-G01",
        "title": "小区电梯长期故障",
        "content": "小区电梯长期故障，物业不维修，请督促处理。",
        "events": tuple(events),
    }
    values.update(overrides)
    return Petition(**values)


def fresh_days(count: int) -> list[date]:
    """Consecutive days no other test uses: windows (and their batch labels) stay private."""
    days = [next_day() for _ in range(count)]
    assert days == [days[0] + timedelta(days=i) for i in range(count)]
    return days


def window_of(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time())
    return start, start + timedelta(days=1)


def static(*petitions: Petition) -> StaticProvider:
    return StaticProvider((p.updated_at, petition_json(p)) for p in petitions)


_staff_numbers = itertools.count(_rng.randrange(10**6))


def staff_member(valid_from: date, **overrides: Any) -> Staff:
    """A township petition officer (乡镇专职) in 江东区东湖街道 with a code and person unique to the run."""
    values: dict[str, Any] = {
        "code": f"TS{next(_staff_numbers):08d}",
        "name": unique_name(3),
        "phone": unique_phone(),
        "kind": "乡镇专职",
        "unit_code": "XZ369901001",
        "grid_code": None,
        "full_time": True,
        "valid_from": valid_from,
        "valid_to": None,
    }
    values.update(overrides)
    return Staff(**values)


def training_class(code: str, start: date) -> TrainingClass:
    return TrainingClass(code, f"测试培训班{code}", start, start + timedelta(days=2), ())


def staff_provider(staff: list[Staff], classes: tuple[TrainingClass, ...] = (), **kw: Any) -> StaffProvider:
    return StaffProvider(staff, classes, **kw)


@contextmanager
def serving(
    provider: RecordsProvider,
    faults: FaultConfig | None = None,
    *,
    staff: RecordsProvider | None = None,
) -> Iterator[PetitionAPIServer]:
    server = PetitionAPIServer(
        ("127.0.0.1", 0),
        token=TOKEN,
        records_provider=provider,
        staff_provider=staff,
        faults=faults or FaultConfig(),
    )
    start_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def get(
    server: PetitionAPIServer, token: str | None = TOKEN, *, path: str = PATH, **params: Any
) -> tuple[int, dict[str, str], dict]:
    url = f"{server.url}{path}?{urlencode(params)}"
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback http)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())


def window_params(since: datetime, until: datetime, **more: Any) -> dict[str, Any]:
    return {"updated_since": since.isoformat(), "updated_until": until.isoformat(), **more}


# --- auth and parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_requests_without_the_right_token_get_401(token: str | None) -> None:
    day = next_day()
    with serving(static(petition(datetime.combine(day, datetime.min.time()).replace(hour=9)))) as server:
        status, headers, body = get(server, token, **window_params(*window_of(day)))
    assert status == 401
    assert "Bearer" in headers["WWW-Authenticate"]
    assert "items" not in body


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"updated_since": "2025-06-01T00:00:00+08:00"},
        {"updated_since": "yesterday", "updated_until": "2025-06-02T00:00:00+08:00"},
        {"updated_since": "2025-06-02T00:00:00+08:00", "updated_until": "2025-06-01T00:00:00+08:00"},
        {"updated_since": "2025-06-01T00:00", "updated_until": "2025-06-02T00:00", "page": 0},
        {"updated_since": "2025-06-01T00:00", "updated_until": "2025-06-02T00:00", "page_size": 501},
    ],
)
def test_bad_parameters_get_400(params: dict[str, Any]) -> None:
    with serving(StaticProvider([])) as server:
        status, _, body = get(server, **params)
    assert status == 400
    assert body["message"]


def test_unknown_path_is_404() -> None:
    with serving(StaticProvider([])) as server, pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.url}/api/v1/other", timeout=5)  # noqa: S310
    assert caught.value.code == 404
    caught.value.close()


# --- paging --------------------------------------------------------------------------------------


def _pages(server: PetitionAPIServer, since: datetime, until: datetime, size: int) -> list[dict]:
    pages, page = [], 1
    while page is not None:
        status, _, body = get(server, **window_params(since, until, page=page, page_size=size))
        assert status == 200
        pages.append(body)
        page = body["next_page"]
    return pages


@pytest.mark.parametrize(
    ("count", "size", "page_lengths"),
    [(0, 3, [0]), (3, 3, [3]), (1, 3, [1]), (4, 3, [3, 1]), (6, 3, [3, 3]), (7, 2, [2, 2, 2, 1])],
)
def test_pages_cover_the_window_once_in_a_stable_order(
    count: int, size: int, page_lengths: list[int]
) -> None:
    day = next_day()
    since, until = window_of(day)
    # Several petitions share a time: the number breaks the tie, so pages never overlap.
    petitions = [petition(since + timedelta(hours=8 + i // 2)) for i in range(count)]
    with serving(static(*petitions)) as server:
        pages = _pages(server, since, until, size)
        beyond = get(server, **window_params(since, until, page=len(pages) + 1, page_size=size))[2]

    assert [len(p["items"]) for p in pages] == page_lengths
    assert all(p["total"] == count and p["page_size"] == size for p in pages)
    assert [p["page"] for p in pages] == list(range(1, len(pages) + 1))
    assert pages[-1]["next_page"] is None
    numbers = [i["xfjbh"] for p in pages for i in p["items"]]
    expected = sorted(petitions, key=lambda p: (p.updated_at, p.number))
    assert numbers == [p.number for p in expected]
    assert beyond["items"] == [] and beyond["next_page"] is None and beyond["total"] == count


def test_items_carry_the_vendor_fields_and_the_nested_history() -> None:
    day = next_day()
    since, until = window_of(day)
    p = petition(since + timedelta(hours=9), ("受理", since + timedelta(hours=11)))
    with serving(static(p)) as server:
        item = get(server, **window_params(since, until))[2]["items"][0]
    assert item["xfjbh"] == p.number
    assert item["djsj"] == f"{p.registered_at:%Y-%m-%dT%H:%M:%S}+08:00"
    assert item["gxsj"] == f"{p.updated_at:%Y-%m-%dT%H:%M:%S}+08:00"
    assert item["blzt"] == "受理"
    assert item["xfr"]["xm"] == p.petitioner.name
    assert item["xfr"]["zjhm"] == p.petitioner.id_number
    assert [(e["xh"], e["lx"]) for e in item["blgc"]] == [(1, "登记"), (2, "受理")]
    assert set(item) >= {"xfqd", "rs", "nrfl", "xfmd", "wtsd", "wgbm", "bt", "xfnr", "rxgdbh", "wgsjbh"}


# --- window semantics ----------------------------------------------------------------------------


def test_the_window_clock_shows_each_window_as_it_stood_at_its_end() -> None:
    day = next_day()
    since, until = window_of(day)
    edge = petition(until)  # registered exactly at the end: belongs to the next window
    updated = petition(since + timedelta(hours=10), ("受理", until + timedelta(days=1, hours=3)))
    with serving(WorldProvider([edge, updated])) as server:
        first = get(server, **window_params(since, until))[2]["items"]
        second = get(server, **window_params(until, until + timedelta(days=1)))[2]["items"]
        third = get(server, **window_params(until + timedelta(days=1), until + timedelta(days=2)))[2]["items"]
    assert [i["xfjbh"] for i in first] == [updated.number]
    assert [e["lx"] for e in first[0]["blgc"]] == ["登记"]  # the later event had not happened yet
    assert [i["xfjbh"] for i in second] == [edge.number]
    assert [i["xfjbh"] for i in third] == [updated.number]
    assert [e["lx"] for e in third[0]["blgc"]] == ["登记", "受理"]


def test_a_fixed_clock_moves_a_petition_changed_later_out_of_the_earlier_window() -> None:
    day = next_day()
    since, until = window_of(day)
    updated = petition(since + timedelta(hours=10), ("受理", until + timedelta(hours=3)))
    quiet = petition(since + timedelta(hours=11))
    future = petition(until + timedelta(days=5))  # after the clock: does not exist yet
    provider = WorldProvider([updated, quiet, future], as_of=until + timedelta(days=1))
    with serving(provider) as server:
        first = get(server, **window_params(since, until))[2]["items"]
        later = get(server, **window_params(until, until + timedelta(days=30)))[2]["items"]
        default_until = get(server, updated_since=since.isoformat())[2]["items"]
    assert [i["xfjbh"] for i in first] == [quiet.number]
    assert [i["xfjbh"] for i in later] == [updated.number]
    assert {i["xfjbh"] for i in default_until} == {quiet.number, updated.number}


def test_offsets_in_the_query_are_converted_to_bureau_time() -> None:
    day = next_day()
    since, until = window_of(day)
    p = petition(since + timedelta(hours=9))
    utc_since = (since - timedelta(hours=8)).isoformat() + "Z"
    utc_until = (until - timedelta(hours=8)).isoformat() + "+00:00"
    with serving(static(p)) as server:
        items = get(server, updated_since=utc_since, updated_until=utc_until)[2]["items"]
    assert [i["xfjbh"] for i in items] == [p.number]


# --- faults --------------------------------------------------------------------------------------


def test_scripted_faults_come_first_and_429_carries_retry_after() -> None:
    day = next_day()
    faults = FaultConfig(script=("429", "503", None), retry_after_seconds=7)
    with serving(static(petition(datetime.combine(day, datetime.min.time()))), faults) as server:
        params = window_params(*window_of(day))
        first, second, third = (get(server, **params) for _ in range(3))
        unauthorised = get(server, "nope", **params)
    assert first[0] == 429 and first[1]["Retry-After"] == "7"
    assert second[0] == 503
    assert third[0] == 200 and third[2]["total"] == 1
    assert unauthorised[0] == 401  # auth is checked before faults


def test_fault_rates_are_reproducible_from_the_seed() -> None:
    config = FaultConfig(rate_429=0.2, rate_5xx=0.2, rate_slow=0.1, seed=42)
    one, two = FaultPlan(config), FaultPlan(config)
    draws = [one.next() for _ in range(400)]
    assert draws == [two.next() for _ in range(400)]
    assert 40 < draws.count("429") < 120
    assert 40 < sum(d in ("500", "502", "503") for d in draws) < 120
    assert 10 < draws.count("slow") < 70
    assert FaultPlan(FaultConfig(seed=42)).next() is None


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_damage_the_field_they_name(kind: str) -> None:
    record = petition_json(petition(datetime(2025, 6, 1, 9), ("受理", datetime(2025, 6, 1, 10))))
    original = json.dumps(record, ensure_ascii=False)
    damaged = corrupt(record, kind)
    assert json.dumps(record, ensure_ascii=False) == original  # a copy is damaged, not the record
    changed = {k for k in record if record[k] != damaged[k]}
    assert (
        changed
        == {
            "missing_number": {"xfjbh"},
            "impossible_date": {"djsj"},
            "unknown_category": {"nrfl"},
            "unknown_event_type": {"blgc"},
        }[kind]
    )


def test_corrupt_rate_is_deterministic_per_petition() -> None:
    base = datetime(2025, 6, 1, 8)
    petitions = [petition(base + timedelta(minutes=i)) for i in range(60)]
    a = WorldProvider(petitions, corrupt_rate=0.3, seed=7).window(base, base + timedelta(days=1))
    b = WorldProvider(petitions, corrupt_rate=0.3, seed=7).window(base, base + timedelta(days=1))
    clean = WorldProvider(petitions).window(base, base + timedelta(days=1))
    assert a == b
    damaged = sum(x != y for x, y in zip(a, clean, strict=True))
    assert 5 < damaged < 35


# --- handlers and staff accounts -----------------------------------------------------------------


def test_events_name_their_handler_account() -> None:
    at = datetime(2025, 6, 2, 9)
    p = petition(at, ("受理", at + timedelta(hours=2)))
    handled = replace(p, events=(replace(p.events[0], handler_code="JG001"), p.events[1]))
    item = petition_json(handled)
    assert [(e["xh"], e["jbr"]) for e in item["blgc"]] == [(1, "JG001"), (2, None)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def test_staff_endpoint_needs_the_token_and_valid_parameters() -> None:
    day = next_day()
    provider = staff_provider([staff_member(day)])
    with serving(StaticProvider([]), staff=provider) as server:
        params = window_params(*window_of(day))
        refused = get(server, "wrong-token", path=STAFF_PATH, **params)
        missing = get(server, path=STAFF_PATH, updated_until=params["updated_until"])
        too_big = get(server, path=STAFF_PATH, **params, page_size=501)
        ok = get(server, path=STAFF_PATH, **params)
    assert refused[0] == 401 and "Bearer" in refused[1]["WWW-Authenticate"] and "items" not in refused[2]
    assert missing[0] == 400 and too_big[0] == 400
    assert ok[0] == 200 and ok[2]["total"] == 1


def test_staff_endpoint_is_404_on_a_server_without_staff() -> None:
    with serving(StaticProvider([])) as server:
        status, _, body = get(server, path=STAFF_PATH, **window_params(*window_of(next_day())))
    assert status == 404 and body["code"] == 404


def test_staff_pages_cover_the_window_once_ordered_by_change_and_code() -> None:
    days = fresh_days(2)
    # Seven accounts in post from the first day, two more from the second: the window is day one.
    first = [staff_member(days[0]) for _ in range(7)]
    second = [staff_member(days[1]) for _ in range(2)]
    with serving(StaticProvider([]), staff=staff_provider(first + second)) as server:
        since, until = window_of(days[0])
        pages, page = [], 1
        while page is not None:
            status, _, body = get(
                server, path=STAFF_PATH, **window_params(since, until, page=page, page_size=3)
            )
            assert status == 200
            pages.append(body)
            page = body["next_page"]
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert all(p["total"] == 7 for p in pages)
    assert [i["rybh"] for p in pages for i in p["items"]] == sorted(s.code for s in first)


def test_a_staff_account_shows_only_what_has_happened_by_the_clock() -> None:
    days = fresh_days(40)
    leaving, posting_start, class_start, promoted = days[10], days[20], days[25], days[30]
    member = staff_member(
        days[0],
        valid_to=leaving,
        postings=(Posting("跟岗", "SZ00", posting_start, posting_start + timedelta(days=60)),),
        trainings=("PXT-01",),
        promoted_on=promoted,
        full_time=False,
        kind="乡镇兼职",
    )
    classes = {"PXT-01": training_class("PXT-01", class_start)}
    before = staff_snapshot(member, classes, _midnight(days[0]) - timedelta(seconds=1))
    at_start = staff_snapshot(member, classes, _midnight(days[0]) + timedelta(hours=9))
    in_posting = staff_snapshot(member, classes, _midnight(posting_start) + timedelta(hours=1))
    at_end = staff_snapshot(member, classes, _midnight(days[39]))
    assert before is None  # not in post yet: no account
    assert at_start is not None and in_posting is not None and at_end is not None
    updated, item = at_start
    assert updated == _midnight(days[0])
    assert item == {
        "rybh": member.code,
        "xm": member.name,
        "lxdh": member.phone,
        "rylb": "乡镇兼职",
        "dwbm": "XZ369901001",
        "wgbm": None,
        "sfzz": False,
        "rzrq": days[0].isoformat(),
        "lzrq": None,
        "jljl": [],
        "pxjl": [],
        "tbrq": None,
        "gxsj": f"{days[0]:%Y-%m-%d}T00:00:00+08:00",
    }
    updated, item = in_posting
    assert updated == _midnight(posting_start) and item["lzrq"] == leaving.isoformat()
    # A posting shows from its first day, with the end date it was appointed for.
    assert item["jljl"] == [
        {
            "lx": "跟岗",
            "dwbm": "SZ00",
            "ksrq": posting_start.isoformat(),
            "jsrq": (posting_start + timedelta(days=60)).isoformat(),
        }
    ]
    assert item["pxjl"] == [] and item["tbrq"] is None
    updated, item = at_end
    assert updated == _midnight(promoted) and item["tbrq"] == promoted.isoformat()
    assert [c["bcbm"] for c in item["pxjl"]] == ["PXT-01"]
    assert item["pxjl"][0]["ksrq"] == class_start.isoformat()


def test_the_staff_window_clock_and_a_fixed_clock() -> None:
    days = fresh_days(3)
    member = staff_member(
        days[0], postings=(Posting("挂职", "XZ369901002", days[1], days[1] + timedelta(days=90)),)
    )
    quiet = staff_member(days[0])
    since, until = window_of(days[0])
    window_clock = staff_provider([member, quiet])
    live = staff_provider([member, quiet], as_of=_midnight(days[2]))
    with serving(StaticProvider([]), staff=window_clock) as a, serving(StaticProvider([]), staff=live) as b:
        # Each window as it stood at its end: day one shows both, without the later posting.
        first = get(a, path=STAFF_PATH, **window_params(since, until))[2]["items"]
        # A live clock: the account changed on day two has left day one's window.
        moved = get(b, path=STAFF_PATH, **window_params(since, until))[2]["items"]
        later = get(b, path=STAFF_PATH, **window_params(until, until + timedelta(days=5)))[2]["items"]
        default_until = get(b, path=STAFF_PATH, updated_since=since.isoformat())[2]["items"]
    assert sorted(i["rybh"] for i in first) == sorted([member.code, quiet.code])
    assert all(i["jljl"] == [] for i in first)
    assert [i["rybh"] for i in moved] == [quiet.code]
    assert [i["rybh"] for i in later] == [member.code] and later[0]["jljl"][0]["lx"] == "挂职"
    assert {i["rybh"] for i in default_until} == {member.code, quiet.code}


def test_the_world_roster_as_served() -> None:
    from xinfang.sim.web_api import world_staff_provider

    roster = world_staff_provider(seed=20250101).window(datetime(2000, 1, 1), datetime(2025, 7, 1))
    kinds = Counter(i["rylb"] for i in roster)
    assert kinds == {"局机关": 48, "乡镇专职": 68, "乡镇兼职": 42, "网格员": 293}
    # 100 township posts at 2025-06-30, 68 of them full-time (the 10 others are leavers' accounts).
    township = [i for i in roster if i["rylb"] in ("乡镇专职", "乡镇兼职") and i["lzrq"] is None]
    assert len(township) == 100 and sum(i["sfzz"] for i in township) == 68
    postings = Counter(p["lx"] for i in roster for p in i["jljl"])
    assert postings == {"挂职": 15, "跟岗": 20}
    h1_classes = Counter(c["bcbm"] for i in roster for c in i["pxjl"] if c["ksrq"] >= "2025-01-01")
    assert len(h1_classes) == 4 and sum(h1_classes.values()) == 320
    assert all(i["wgbm"] for i in roster if i["rylb"] == "网格员")
    assert [(i["gxsj"], i["rybh"]) for i in roster] == sorted((i["gxsj"], i["rybh"]) for i in roster)


@pytest.mark.parametrize("kind", STAFF_CORRUPTIONS)
def test_staff_corruptions_damage_the_field_they_name(kind: str) -> None:
    _, record = staff_snapshot(staff_member(date(2020, 7, 1)), {}, datetime(2025, 6, 1))
    original = json.dumps(record, ensure_ascii=False)
    damaged = corrupt_staff(record, kind)
    assert json.dumps(record, ensure_ascii=False) == original
    changed = {k for k in record if record[k] != damaged[k]}
    assert (
        changed
        == {
            "missing_code": {"rybh"},
            "malformed_phone": {"lxdh"},
            "unknown_kind": {"rylb"},
            "impossible_date": {"rzrq"},
        }[kind]
    )


def test_staff_corrupt_rate_is_deterministic_per_account() -> None:
    staff = [staff_member(date(2020, 7, 1)) for _ in range(60)]
    window = (datetime(2020, 7, 1), datetime(2020, 7, 2))
    a = staff_provider(staff, corrupt_rate=0.3, seed=7).window(*window)
    b = staff_provider(staff, corrupt_rate=0.3, seed=7).window(*window)
    clean = staff_provider(staff).window(*window)
    assert a == b
    assert 5 < sum(x != y for x, y in zip(a, clean, strict=True)) < 35


# --- the separate process ------------------------------------------------------------------------


def test_the_cli_serves_the_world_in_its_own_process() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    xinfang = Path(sys.executable).with_name("xinfang")
    env = {**os.environ, "XINFANG_SIM_WEB_TOKEN": TOKEN, "PYTHONDONTWRITEBYTECODE": ""}
    args = [str(xinfang), "sim", "serve-web", "--port", "0", "--from", "2025-06-01", "--to", "2025-06-03"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = ""
        for _ in range(5):
            line = process.stdout.readline()
            if "listening on" in line:
                url = line.split("listening on ", 1)[1].strip()
                break
        assert url.endswith(PATH), f"server did not start: {process.stderr.read() if process.poll() else ''}"
        query = urlencode(window_params(datetime(2025, 6, 2), datetime(2025, 6, 3), page_size=5))
        refused = urllib.request.Request(f"{url}?{query}")  # noqa: S310 (loopback http)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(refused, timeout=10)  # noqa: S310
        assert caught.value.code == 401
        caught.value.close()
        request = urllib.request.Request(f"{url}?{query}", headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body = json.loads(response.read())
        assert body["total"] > 5 and len(body["items"]) == 5 and body["next_page"] == 2
        assert all(i["xfjbh"].startswith("XF") and i["blgc"] for i in body["items"])
        # Events of the bureau and the towns name their handler.
        assert any(e["jbr"] for i in body["items"] for e in i["blgc"])
        # The same process serves the staff accounts, whatever --from/--to say.
        staff_query = urlencode(window_params(datetime(2000, 1, 1), datetime(2025, 6, 3), page_size=500))
        staff_url = url.removesuffix(PATH) + STAFF_PATH
        request = urllib.request.Request(  # noqa: S310 (loopback http)
            f"{staff_url}?{staff_query}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            roster = json.loads(response.read())
        assert roster["total"] == len(roster["items"]) > 400
        assert {i["rylb"] for i in roster["items"]} == {"局机关", "乡镇专职", "乡镇兼职", "网格员"}
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()
