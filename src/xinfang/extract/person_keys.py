"""The province's pseudonym of each petitioner, for the provincial extract.

The city's ``person_key`` is an HMAC under the city's own key, so two cities
give the same person different keys. The provincial bureau issues one key to
every city; hashing the same identifier (ID number, else the phone number, as
normalised at ingestion) under it gives a key the province can link across
cities without seeing any identity. Identities live only in ``restricted``:
this module reads them there, in this process, and writes keys only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

import psycopg

from xinfang import pii

log = logging.getLogger(__name__)

# Where each identified person's raw identifier lives, and how the city keyed it.
# online_petitioners: the ID number, else the phone; hotline_callers: the phone.
_IDENTITIES = {
    "restricted.online_petitioners": (
        "SELECT DISTINCT p.person_key, coalesce(p.id_number, p.phone) "
        "FROM restricted.online_petitioners AS p "
        "LEFT JOIN raw.province_person_keys AS m ON m.person_key = p.person_key AND m.key_id = %(key_id)s "
        "WHERE m.person_key IS NULL"
    ),
    "restricted.hotline_callers": (
        "SELECT DISTINCT c.caller_key, c.caller_phone "
        "FROM restricted.hotline_callers AS c "
        "LEFT JOIN raw.province_person_keys AS m ON m.person_key = c.caller_key AND m.key_id = %(key_id)s "
        "WHERE m.person_key IS NULL"
    ),
}


_FETCH_ROWS = 50_000


class PersonKeyError(RuntimeError):
    """The identities in restricted do not reproduce the city's person keys."""


@dataclass(frozen=True)
class RefreshResult:
    key_id: str
    added: int
    replaced_other_key: int


def key_id(province_key: bytes) -> str:
    """A public label of the province key (printed in the package), which reveals nothing of it."""
    return hashlib.sha256(b"xinfang-province-key-id:" + province_key).hexdigest()[:16]


def province_person_key(identifier: str, province_key: bytes) -> str:
    return hmac.new(province_key, identifier.encode(), hashlib.sha256).hexdigest()


def refresh(conn: psycopg.Connection, *, pii_key: bytes, province_key: bytes) -> RefreshResult:
    """Add the province key of every person without one; re-key everyone after a key change.

    Each identifier is first re-hashed with the city key and compared with the
    stored person_key: a mismatch means the identifier is not the one the key
    was made from, and a wrong province key would silently break linking.
    Idempotent: a second call adds nothing.
    """
    current = key_id(province_key)
    added = 0
    with conn.transaction(), conn.cursor() as cur:
        # One refresh at a time: the rows are keyed by person_key, and two writers would collide.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.province_person_keys'))")
        cur.execute("DELETE FROM raw.province_person_keys WHERE key_id <> %s", (current,))
        replaced = cur.rowcount
        for number, (table, query) in enumerate(_IDENTITIES.items()):
            # A server-side cursor: the first refresh meets every caller of the history (10
            # million at scale), and one fetchall would hold them all in memory. The second query's
            # anti-join sees the first's rows, so a person in both tables is keyed once.
            with conn.cursor(name=f"xinfang_identities_{number}") as source:
                source.execute(query, {"key_id": current})
                while batch := source.fetchmany(_FETCH_ROWS):
                    keys = []
                    for person_key, identifier in batch:
                        if identifier is None or pii.person_key(identifier, pii_key) != person_key:
                            # The values are personal data: name the table and count only.
                            raise PersonKeyError(
                                f"{table}: a stored identifier does not reproduce its person_key under "
                                "the current XINFANG_PII_KEY (was the key changed after ingestion?)"
                            )
                        keys.append((person_key, province_person_key(identifier, province_key), current))
                    with cur.copy(
                        "COPY raw.province_person_keys (person_key, province_person_key, key_id) FROM STDIN"
                    ) as copy:
                        for row in keys:
                            copy.write_row(row)
                    added += len(keys)
    log.info(
        "province person keys (key %s): %d added, %d made with another key replaced",
        current,
        added,
        replaced,
    )
    return RefreshResult(current, added, replaced)
