"""Simulator of the online petition platform's HTTP JSON API (网上信访平台数据接口).

`GET /api/v1/petitions` answers with the petitions whose last change lies in
[updated_since, updated_until), each with its nested handling history (every
step naming its handler account, 经办人), in pages ordered by (last change,
number) so that paging through a window is stable. `GET /api/v1/staff` pages
the same way through the platform's staff accounts (bureau, township and grid
staff with their postings and training records). Field names follow the
vendor's pinyin abbreviations; docs/sources/online_petition_platform.md is the
interface document.

Clock: the platform shows each petition as it stood at a moment. By default
(clock mode "window") that moment is the end of the requested window, i.e. a
client asking right at `updated_until`; with a fixed `as_of` every request
sees the world as of that moment, so a petition changed again after the
window has moved on to a later window (as a live system behaves).

Faults (429 with Retry-After, 5xx, slow answers) and corrupted records are
drawn from a seeded generator per request number and per petition number, so a
test run is reproducible. The server runs in its own process
(`xinfang sim serve-web`) or, for tests, in a thread (`start_in_thread`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from xinfang.config import BUREAU_TZ
from xinfang.sim.records import Petition, PetitionEvent

if TYPE_CHECKING:
    from xinfang.sim.world import Staff, TrainingClass

log = logging.getLogger(__name__)

PATH = "/api/v1/petitions"
STAFF_PATH = "/api/v1/staff"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
# Times the platform writes: bureau time with its offset, to the second.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S+08:00"
_TICK = timedelta(microseconds=1)

JsonRecord = dict[str, Any]


class RecordsProvider(Protocol):
    """What the server pages through: vendor-format records of one window, in a stable order."""

    def window(self, since: datetime, until: datetime) -> Sequence[JsonRecord]: ...


# --- the vendor's JSON ---------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """Naive bureau time (the world's convention) as the platform writes it."""
    return moment.strftime(TIME_FORMAT)


def parse_query_time(value: str) -> datetime:
    """An ISO 8601 query value as naive bureau time; without an offset it is bureau time."""
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(BUREAU_TZ).replace(tzinfo=None)
    return moment


def _event_json(event: PetitionEvent) -> JsonRecord:
    return {
        "xh": event.seq,
        "lx": event.type,
        "sj": format_time(event.at),
        "dw": event.unit_code,
        "ydw": event.from_unit_code,
        "pj": event.rating,
        "bz": event.note,
        "jbr": event.handler_code,
    }


def petition_json(petition: Petition) -> JsonRecord:
    """One petition as the API item (信访件): the vendor's field names, nested history."""
    person = petition.petitioner
    events = sorted(petition.events, key=lambda e: e.seq)
    return {
        "xfjbh": petition.number,
        "xfqd": petition.channel,
        "djsj": format_time(petition.registered_at),
        "gxsj": format_time(petition.updated_at),
        "blzt": max(events, key=lambda e: (e.at, e.seq)).type,
        "xfr": {
            "xm": person.name,
            "zjhm": person.id_number or None,
            "lxdh": person.phone or None,
            "zz": person.address,
            "zzqh": person.region_code,
        },
        "rs": petition.group_size,
        "nrfl": petition.category_code,
        "xfmd": petition.purpose_code,
        "wtsd": petition.town_code,
        "wgbm": petition.grid_code,
        "bt": petition.title,
        "xfnr": petition.content,
        "rxgdbh": petition.hotline_work_order_no,
        "wgsjbh": petition.grid_event_id,
        "blgc": [_event_json(e) for e in events],
    }


# --- record providers ----------------------------------------------------------------------------


class WorldProvider:
    """Petitions of the world model, indexed by event time, shown as of the server's clock.

    `as_of=None` is the "window" clock: a window is shown as it stood just
    before its end. A fixed `as_of` shows every window as of that moment.
    """

    def __init__(
        self,
        petitions: Iterable[Petition],
        *,
        as_of: datetime | None = None,
        corrupt_rate: float = 0.0,
        seed: int = 0,
        cache_windows: int = 8,
    ):
        self.petitions = list(petitions)
        self.as_of = as_of
        self.corrupt_rate = corrupt_rate
        self.seed = seed
        # Every event time with its petition, sorted: a window's candidates are a bisect away.
        self._events = sorted((e.at, i) for i, p in enumerate(self.petitions) for e in p.events)
        self._times = [t for t, _ in self._events]
        self._cache: OrderedDict[tuple[datetime, datetime], list[JsonRecord]] = OrderedDict()
        self._cache_size = cache_windows
        self._lock = threading.Lock()

    def window(self, since: datetime, until: datetime) -> list[JsonRecord]:
        key = (since, until)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        records = self._compute(since, until)
        with self._lock:
            self._cache[key] = records
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return records

    def _compute(self, since: datetime, until: datetime) -> list[JsonRecord]:
        moment = until - _TICK if self.as_of is None else self.as_of
        upper = min(until - _TICK, moment)
        lo, hi = bisect_left(self._times, since), bisect_left(self._times, upper + _TICK)
        shown = []
        for index in sorted({i for _, i in self._events[lo:hi]}):
            snapshot = self.petitions[index].as_of(moment)
            if snapshot is not None and since <= snapshot.updated_at < until:
                shown.append(snapshot)
        shown.sort(key=lambda p: (p.updated_at, p.number))
        return [self._maybe_corrupt(petition_json(p)) for p in shown]

    def _maybe_corrupt(self, record: JsonRecord) -> JsonRecord:
        if self.corrupt_rate <= 0:
            return record
        # Decided per petition number, so a bad record stays bad when fetched again.
        rng = random.Random(f"{self.seed}:corrupt:{record['xfjbh']}")
        if rng.random() >= self.corrupt_rate:
            return record
        return corrupt(record, rng.choice(CORRUPTIONS))


CORRUPTIONS = ("missing_number", "impossible_date", "unknown_category", "unknown_event_type")


def corrupt(record: JsonRecord, kind: str) -> JsonRecord:
    """Damage a record the way the platform's broken exports do (for tests and --corrupt-rate)."""
    damaged = json.loads(json.dumps(record, ensure_ascii=False))
    if kind == "missing_number":
        damaged["xfjbh"] = ""
    elif kind == "impossible_date":
        damaged["djsj"] = damaged["djsj"][:5] + "02-30" + damaged["djsj"][10:]
    elif kind == "unknown_category":
        damaged["nrfl"] = "999999"
    elif kind == "unknown_event_type":
        damaged["blgc"][-1]["lx"] = "已归档待查"
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return damaged


class StaticProvider:
    """Hand-built records for tests: (time of last change, record), any content, even broken.

    `key` is the natural key that breaks ties in the order: xfjbh for petitions, rybh for staff.
    """

    def __init__(self, records: Iterable[tuple[datetime, JsonRecord]], *, key: str = "xfjbh"):
        # Broken records may not even be objects: they sort by time alone.
        self.records = sorted(
            records, key=lambda r: (r[0], str(r[1].get(key, "")) if isinstance(r[1], dict) else "")
        )

    def window(self, since: datetime, until: datetime) -> list[JsonRecord]:
        return [record for at, record in self.records if since <= at < until]


# --- staff accounts (人员) -------------------------------------------------------------------------


def _from_day(day: date) -> datetime:
    """When a dated staff fact shows on the platform: 00:00 of its date (it takes effect that day)."""
    return datetime.combine(day, clock_time(0))


def staff_snapshot(
    staff: Staff, classes: dict[str, TrainingClass], moment: datetime
) -> tuple[datetime, JsonRecord] | None:
    """(last change, API item) of a staff account as the platform showed it at `moment`.

    None before the person took up the post. Facts dated after `moment` (a leaving, a posting, a
    training class, a promotion) are not shown yet; a posting or class shows its planned end date
    from its first day, as the appointment or enrolment states it.
    """
    if _from_day(staff.valid_from) > moment:
        return None

    def shown(day: date | None) -> date | None:
        return day if day is not None and _from_day(day) <= moment else None

    left = shown(staff.valid_to)
    postings = sorted((p for p in staff.postings if shown(p.start)), key=lambda p: (p.start, p.unit_code))
    trainings = sorted(
        (classes[c] for c in staff.trainings if shown(classes[c].start)), key=lambda c: (c.start, c.code)
    )
    promoted = shown(staff.promoted_on)
    facts = [staff.valid_from, *(p.start for p in postings), *(c.start for c in trainings)]
    facts += [d for d in (left, promoted) if d is not None]
    updated = _from_day(max(facts))
    record = {
        "rybh": staff.code,
        "xm": staff.name,
        "lxdh": staff.phone,
        "rylb": staff.kind,
        "dwbm": staff.unit_code,
        "wgbm": staff.grid_code,
        "sfzz": staff.full_time,
        "rzrq": staff.valid_from.isoformat(),
        "lzrq": left.isoformat() if left else None,
        "jljl": [
            {"lx": p.kind, "dwbm": p.unit_code, "ksrq": p.start.isoformat(), "jsrq": p.end.isoformat()}
            for p in postings
        ],
        "pxjl": [
            {"bcbm": c.code, "bcmc": c.name, "ksrq": c.start.isoformat(), "jsrq": c.end.isoformat()}
            for c in trainings
        ],
        "tbrq": promoted.isoformat() if promoted else None,
        "gxsj": format_time(updated),
    }
    return updated, record


class StaffProvider:
    """The world's staff accounts, shown as of the server's clock (the same clock rules as petitions)."""

    def __init__(
        self,
        staff: Iterable[Staff],
        training_classes: Iterable[TrainingClass],
        *,
        as_of: datetime | None = None,
        corrupt_rate: float = 0.0,
        seed: int = 0,
    ):
        self.staff = list(staff)
        self.classes = {c.code: c for c in training_classes}
        self.as_of = as_of
        self.corrupt_rate = corrupt_rate
        self.seed = seed

    def window(self, since: datetime, until: datetime) -> list[JsonRecord]:
        # A few hundred accounts: computed per request, no index needed.
        moment = until - _TICK if self.as_of is None else self.as_of
        shown = []
        for s in self.staff:
            snapshot = staff_snapshot(s, self.classes, moment)
            if snapshot is not None and since <= snapshot[0] < until:
                shown.append(snapshot)
        shown.sort(key=lambda u: (u[0], u[1]["rybh"]))
        return [self._maybe_corrupt(record) for _, record in shown]

    def _maybe_corrupt(self, record: JsonRecord) -> JsonRecord:
        if self.corrupt_rate <= 0:
            return record
        rng = random.Random(f"{self.seed}:corrupt-staff:{record['rybh']}")
        if rng.random() >= self.corrupt_rate:
            return record
        return corrupt_staff(record, rng.choice(STAFF_CORRUPTIONS))


STAFF_CORRUPTIONS = ("missing_code", "malformed_phone", "unknown_kind", "impossible_date")


def corrupt_staff(record: JsonRecord, kind: str) -> JsonRecord:
    """Damage a staff record the way broken exports do (for tests and --corrupt-rate)."""
    damaged = json.loads(json.dumps(record, ensure_ascii=False))
    if kind == "missing_code":
        damaged["rybh"] = ""
    elif kind == "malformed_phone":
        damaged["lxdh"] = damaged["lxdh"][:4]  # truncated: too short for any phone number
    elif kind == "unknown_kind":
        damaged["rylb"] = "临时工"
    elif kind == "impossible_date":
        damaged["rzrq"] = damaged["rzrq"][:5] + "02-30"
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return damaged


# --- faults --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultConfig:
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 5.0
    retry_after_seconds: int = 1
    seed: int = 0
    # Faults of the first requests, in order ("429", "500", "503", "slow", None), before the rates apply.
    script: tuple[str | None, ...] = ()


class FaultPlan:
    """Which fault, if any, the n-th authenticated request gets: scripted first, then seeded rates."""

    def __init__(self, config: FaultConfig):
        self.config = config
        self._count = 0
        self._lock = threading.Lock()

    def next(self) -> str | None:
        with self._lock:
            self._count += 1
            n = self._count
        cfg = self.config
        if n <= len(cfg.script):
            return cfg.script[n - 1]
        rng = random.Random(f"{cfg.seed}:request:{n}")
        draw = rng.random()
        if draw < cfg.rate_429:
            return "429"
        if draw < cfg.rate_429 + cfg.rate_5xx:
            return rng.choice(("500", "502", "503"))
        if draw < cfg.rate_429 + cfg.rate_5xx + cfg.rate_slow:
            return "slow"
        return None

    @property
    def requests(self) -> int:
        return self._count


# --- the server ----------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


class PetitionAPIServer(ThreadingHTTPServer):
    """The platform's API on (host, port); port 0 picks a free one.

    `records_provider` serves /api/v1/petitions, `staff_provider` /api/v1/staff (404 without one).
    """

    daemon_threads = True  # a slow answer must not keep shutdown waiting

    def __init__(
        self,
        address: tuple[str, int],
        *,
        token: str,
        records_provider: RecordsProvider,
        staff_provider: RecordsProvider | None = None,
        faults: FaultConfig = FaultConfig(),
    ):
        if not token:
            raise ValueError("the API needs a token")
        self.token = token
        self.provider = records_provider
        self.staff_provider = staff_provider
        self.faults = FaultPlan(faults)
        super().__init__(address, _Handler)

    def provider_for(self, path: str) -> RecordsProvider | None:
        return {PATH: self.provider, STAFF_PATH: self.staff_provider}.get(path)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # Clients that time out close the socket under a slow answer: expected, not worth a traceback.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def answer(self, query: dict[str, list[str]], provider: RecordsProvider | None = None) -> JsonRecord:
        provider = self.provider if provider is None else provider

        def one(name: str, default: str | None = None) -> str | None:
            values = query.get(name)
            return values[-1] if values else default

        try:
            since_text, until_text = one("updated_since"), one("updated_until")
            if since_text is None:
                raise BadRequest("updated_since is required")
            since = parse_query_time(since_text)
            if until_text is None:
                as_of = getattr(provider, "as_of", None)
                if as_of is None:
                    raise BadRequest("updated_until is required")
                until = as_of + _TICK
            else:
                until = parse_query_time(until_text)
            page = int(one("page", "1") or "1")
            page_size = int(one("page_size", str(DEFAULT_PAGE_SIZE)) or DEFAULT_PAGE_SIZE)
        except ValueError as exc:
            raise BadRequest(f"bad query parameter: {exc}") from None
        if until <= since:
            raise BadRequest("updated_until must be after updated_since")
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadRequest(f"page must be >= 1 and page_size within 1..{MAX_PAGE_SIZE}")
        records = provider.window(since, until)
        start = (page - 1) * page_size
        items = list(records[start : start + page_size])
        has_more = start + page_size < len(records)
        return {
            "items": items,
            "page": page,
            "page_size": page_size,
            "total": len(records),
            "next_page": page + 1 if has_more else None,
        }


class _Handler(BaseHTTPRequestHandler):
    server: PetitionAPIServer
    protocol_version = "HTTP/1.1"
    server_version = "XinfangOnlinePlatform/2.4"

    def log_message(self, format: str, *args: Any) -> None:
        # Only method, path and status: no header (the token) is ever logged.
        log.debug("%s " + format, self.address_string(), *args)

    def _send_json(self, status: int, body: JsonRecord, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            hashlib.sha256(presented.strip().encode()).digest(),
            hashlib.sha256(self.server.token.encode()).digest(),
        )

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        provider = self.server.provider_for(url.path)
        if provider is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"code": 404, "message": "no such resource"})
            return
        if not self._authorised():
            self._send_json(
                HTTPStatus.UNAUTHORIZED,
                {"code": 401, "message": "missing or invalid token"},
                {"WWW-Authenticate": 'Bearer realm="xinfang"'},
            )
            return
        fault = self.server.faults.next()
        if fault == "429":
            retry_after = str(self.server.faults.config.retry_after_seconds)
            self._send_json(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"code": 429, "message": "rate limit exceeded"},
                {"Retry-After": retry_after},
            )
            return
        if fault in ("500", "502", "503"):
            self._send_json(int(fault), {"code": int(fault), "message": "upstream error"})
            return
        if fault == "slow":
            time.sleep(self.server.faults.config.slow_seconds)
        try:
            body = self.server.answer(parse_qs(url.query, keep_blank_values=True), provider)
        except BadRequest as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, {"code": 400, "message": str(exc)})
            return
        self._send_json(HTTPStatus.OK, body)


def start_in_thread(server: PetitionAPIServer) -> threading.Thread:
    """Serve in a daemon thread (tests); stop with server.shutdown(); server.server_close()."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="petition-api", daemon=True
    )
    thread.start()
    return thread


def world_provider(
    *,
    seed: int,
    start: date | None = None,
    end: date | None = None,
    as_of: datetime | None = None,
    corrupt_rate: float = 0.0,
    build: Callable[..., Any] | None = None,
) -> WorldProvider:
    """The world model's petitions registered in [start, end] (default: the whole world)."""
    from xinfang.sim import world as world_model

    config = world_model.WorldConfig(seed=seed)
    world = (build or world_model.build_world)(config)
    first = start or config.start
    last = end or config.end
    return WorldProvider(world.petitions(first, last), as_of=as_of, corrupt_rate=corrupt_rate, seed=seed)


def world_staff_provider(
    *,
    seed: int,
    as_of: datetime | None = None,
    corrupt_rate: float = 0.0,
    build: Callable[..., Any] | None = None,
) -> StaffProvider:
    """The world model's staff accounts (every kind, grid workers included, for their trainings)."""
    from xinfang.sim import world as world_model

    world = (build or world_model.build_world)(world_model.WorldConfig(seed=seed))
    return StaffProvider(
        world.staff, world.training_classes, as_of=as_of, corrupt_rate=corrupt_rate, seed=seed
    )


def serve(
    *,
    host: str,
    port: int,
    token: str,
    provider: RecordsProvider,
    faults: FaultConfig,
    staff_provider: RecordsProvider | None = None,
) -> None:
    """Run until interrupted (the `xinfang sim serve-web` process)."""
    if staff_provider is None and isinstance(provider, WorldProvider):
        # The process serves one world: its staff with the same seed, clock and damage rate.
        staff_provider = world_staff_provider(
            seed=provider.seed, as_of=provider.as_of, corrupt_rate=provider.corrupt_rate
        )
    server = PetitionAPIServer(
        (host, port), token=token, records_provider=provider, staff_provider=staff_provider, faults=faults
    )
    if staff_provider is not None:
        print(f"staff accounts served at {server.url}{STAFF_PATH}", flush=True)
    # Printed, not logged: whoever started the process reads the bound port (--port 0) from here.
    print(f"online petition platform API listening on {server.url}{PATH}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
