"""Mechanics of the hotline loader's fast path: CSV records, COPY text, keyed hashes, background COPY.

Per-row Python used to cost the loader several times what PostgreSQL spends on
the same rows. These pieces make each row cheap and let the server work while
Python prepares the next rows, changing nothing the loader guarantees: records
are split exactly as the csv module splits them, COPY text is escaped exactly
as PostgreSQL reads it back, and the keyed hash equals ``xinfang.pii.person_key``.
The tests check each against its slow reference.
"""

from __future__ import annotations

import csv
import hashlib
import io
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime

import psycopg

# COPY text format: the NULL marker (a backslash in data is always escaped, so it cannot clash).
NULL = "\\N"


def text_blocks(data: bytes, encoding: str, block_size: int = 1 << 20) -> Iterator[str]:
    """The decoded text in blocks of whole lines, so the first rows can load before the rest is decoded.

    Only for encodings in which the byte 0x0A is always a line feed, never part
    of a multi-byte character (ASCII, UTF-8, GB18030, GBK): cutting right after
    it decodes every byte exactly as decoding the whole file at once would.
    Undecodable bytes are kept as lone surrogates (surrogateescape).
    """
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + block_size)
        end = len(data) if end < 0 else end + 1
        yield data[start:end].decode(encoding, errors="surrogateescape")
        start = end


# Lone surrogates stand for bytes that were not valid in the file's encoding.
_UNDECODED = re.compile("[\udc80-\udcff]")


def split_records(blocks: Iterable[str]) -> Iterator[tuple[list[str], bool, bool]]:
    """``(values, needs_escape, unclean)`` of each record, as ``csv.reader(io.StringIO(text, newline=""))``
    reads the text the blocks make up.

    Almost every line of an export holds no quote character, and such a line is
    one whole record whose fields are exactly ``line.split(",")`` (the excel
    dialect has no escape character and keeps spaces). Only lines with a quote
    go through the csv module, which may then pull further lines for a quoted
    field that spans lines. ``needs_escape`` is False when no value can hold a
    character COPY text must escape (backslash, tab, CR, LF), so the caller may
    write the values as they are; ``unclean`` is False when the record's block
    holds neither NUL nor undecodable bytes, so its values need no search for them.
    """
    state = {"unclean": False}
    lines = _lines(blocks, state)
    pending: list[str] = []

    def feed() -> Iterator[str]:
        # The csv reader reads one line at a time and only as far as its record needs,
        # so after each record the shared iterator stands at the start of the next one.
        while True:
            if pending:
                yield pending.pop()
                continue
            line = next(lines, None)
            if line is None:
                return
            yield line

    reader = csv.reader(feed())
    for line in lines:
        if '"' in line:
            pending.append(line)
            yield next(reader), True, True
            continue
        body = line.rstrip("\r\n")
        # csv yields an empty record (not one empty field) for an empty line.
        yield (body.split(",") if body else []), ("\\" in body or "\t" in body), state["unclean"]


def _lines(blocks: Iterable[str], state: dict[str, bool]) -> Iterator[str]:
    """Lines with their endings, split as io.StringIO(newline="") splits them (at CR LF, LF or CR)."""
    for block in blocks:
        state["unclean"] = "\x00" in block or _UNDECODED.search(block) is not None
        if block.count("\r") != block.count("\r\n"):
            # A bare CR ends a line for io and csv but not for str.split.
            yield from io.StringIO(block, newline="")
            continue
        pieces = block.split("\n")
        tail = pieces.pop()  # "" when the block ends with a line feed, else a last line without one
        for piece in pieces:
            yield piece + "\n"
        if tail:
            yield tail


def escape(value: str) -> str:
    """A value as COPY text (format text, tab-delimited) spells it."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    return value


def copy_line(values: Sequence[object]) -> str:
    """One row of COPY text from Python values: the general (slower) form, every value escaped."""
    out = []
    for v in values:
        if v is None:
            out.append(NULL)
        elif isinstance(v, str):
            out.append(escape(v))
        elif isinstance(v, datetime):
            out.append(v.isoformat(" "))
        elif isinstance(v, date):
            out.append(v.isoformat())
        elif isinstance(v, int):
            out.append(str(v))
        else:
            raise TypeError(f"no COPY text form for {type(v).__name__}")
    return "\t".join(out) + "\n"


def keyed_hasher(key: bytes) -> Callable[[str], str]:
    """``lambda s: hmac.new(key, s.encode(), sha256).hexdigest()``, about three times cheaper.

    HMAC hashes the padded key before every message; hashing it once and copying
    the two hash states per message gives the same digest (RFC 2104) without
    the hmac module's per-call object set-up.
    """
    block = 64  # SHA-256 block size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def person_key(identifier: str) -> str:
        i = inner.copy()
        i.update(identifier.encode())
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()

    return person_key


def copy_in_background(
    conn: psycopg.Connection, statements: Sequence[str], chunks: Iterable[Sequence[bytes]]
) -> None:
    """Run one COPY per statement for each chunk in a writer thread while ``chunks`` makes the next one.

    Each chunk holds one block of COPY text per statement. The server checks a
    COPY's foreign keys when the statement ends, so one COPY per table for the
    whole file would leave the client idle while the server checks every row;
    COPYing chunk by chunk lets the server insert and check one chunk while
    this process parses, validates and pseudonymises the next. Only the writer
    thread uses the connection until it has been joined. An error on either
    side stops both and is raised here, inside the caller's transaction, which
    then rolls back.
    """
    handoff: queue.Queue[Sequence[bytes] | None] = queue.Queue(maxsize=2)
    failures: list[BaseException] = []

    def writer() -> None:
        drained = False
        try:
            with conn.cursor() as cur:
                while (chunk := handoff.get()) is not None:
                    for statement, data in zip(statements, chunk, strict=True):
                        with cur.copy(statement) as cp:
                            cp.write(data)
                drained = True
        except BaseException as exc:  # re-raised in the calling thread
            failures.append(exc)
            # Take what the producer still puts, up to its final None, so it never blocks.
            while not drained and handoff.get() is not None:
                pass

    thread = threading.Thread(target=writer, name="hotline-copy", daemon=True)
    with _fast_thread_switching():
        thread.start()
        try:
            for chunk in chunks:
                if failures:
                    break
                handoff.put(chunk)
        except Exception as exc:
            # The server's error, if the writer had one, is the cause worth reporting.
            if failures:
                failures[0].add_note(f"the file's reader then failed too: {type(exc).__name__}")
                raise failures[0] from None
            raise
        finally:
            handoff.put(None)
            thread.join()
    if failures:
        raise failures[0]


_switching_lock = threading.Lock()
_switching_users = 0
_switching_saved = 0.005


@contextmanager
def _fast_thread_switching() -> Iterator[None]:
    """Shorten the interpreter's thread switch interval while any load's writer runs.

    The producer holds the GIL almost all the time; with the default 5 ms
    interval the writer would wait that long each time its socket becomes
    writable again, and the server would sit idle. The setting is process-wide,
    so concurrent loads in one process share it: the first sets it, the last
    restores it.
    """
    global _switching_users, _switching_saved
    with _switching_lock:
        if _switching_users == 0:
            _switching_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switching_saved, 0.0005))
        _switching_users += 1
    try:
        yield
    finally:
        with _switching_lock:
            _switching_users -= 1
            if _switching_users == 0:
                sys.setswitchinterval(_switching_saved)
