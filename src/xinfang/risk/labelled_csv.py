"""Labelled text from CSV files, with errors that name the file, the row and the column.

Row numbers count data rows from 1 (the header is row 0); a row's *line* is
the physical line of the file where it starts, which differs from the row
number as soon as a field holds line breaks (real messages often do).
"""

from __future__ import annotations

import csv
import io
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ENCODING = "utf-8-sig"  # UTF-8 with or without a byte-order mark

# Messages can be long; the csv module's default limit (128 KiB a field) is not a sane rejection rule.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class LabelledDataError(ValueError):
    """A labelled file that cannot be used as it is; the message names file, row and column."""


@dataclass
class LabelledTexts:
    """Texts with their labels (and optional record ids), in file order."""

    texts: list[str]
    labels: list[str]
    ids: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indexes: Sequence[int]) -> LabelledTexts:
        return LabelledTexts(
            texts=[self.texts[i] for i in indexes],
            labels=[self.labels[i] for i in indexes],
            ids=None if self.ids is None else [self.ids[i] for i in indexes],
            source=self.source,
            notes=list(self.notes),
        )


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode(encoding, errors="replace")
        line = prefix.count("\n") + 1
        # The record the bad bytes belong to: a sentinel after the prefix either continues the
        # partial last record or starts a new one, whichever the CSV grammar says (quoted line breaks).
        try:
            records = [r for r in csv.reader(io.StringIO(prefix + "X", newline="")) if r]
            row = len(records) - 1
        except csv.Error:
            row = -1
        where = "the header" if row == 0 else (f"row {row}" if row > 0 else "a row")
        raise LabelledDataError(
            f"{path}: {where} (line {line}) is not valid {encoding}: bytes "
            f"{raw[exc.start : exc.end]!r} at byte offset {exc.start}; "
            "give the file's encoding with --encoding (e.g. gb18030)"
        ) from None
    except LookupError:
        raise LabelledDataError(f"{path}: unknown encoding {encoding!r}") from None


def read_labelled_csv(
    path: str | Path,
    *,
    text_columns: Sequence[str],
    label_column: str,
    id_column: str | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> LabelledTexts:
    """Read `text_columns` (joined with a space, in the order given) and `label_column` of a CSV file.

    Raises LabelledDataError naming the file, row, line and column for: an
    unreadable file, bytes that are not `encoding`, a column missing from the
    header, a row with too few or too many fields, a malformed row, an empty
    label. Empty texts are allowed (some messages are only a subject). Blank
    lines are skipped.
    """
    path = Path(path)
    if not text_columns:
        raise LabelledDataError(f"{path}: give at least one text column")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabelledDataError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    content = _decode(path, raw, encoding)
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LabelledDataError(f"{path}: the file is empty (no header row)") from None
    except csv.Error as exc:
        raise LabelledDataError(f"{path}: the header (line 1) is malformed: {exc}") from None
    header = [h.lstrip("\ufeff").strip() for h in header]  # a BOM read with a plain utf-8 codec
    wanted = [*text_columns, label_column, *([id_column] if id_column else [])]
    position: dict[str, int] = {}
    for name in wanted:
        if name not in header:
            raise LabelledDataError(
                f"{path}: no column {name!r} in the header (line 1); "
                f"its columns are: {', '.join(repr(h) for h in header)}"
            )
        position[name] = header.index(name)
    if len(set(header)) != len(header):
        doubled = sorted({h for h in header if header.count(h) > 1} & set(wanted))
        if doubled:
            raise LabelledDataError(f"{path}: the header (line 1) names column {doubled[0]!r} twice")

    texts: list[str] = []
    labels: list[str] = []
    ids: list[str] = []
    row = 0
    last_line = reader.line_num
    while True:
        start_line = last_line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise LabelledDataError(
                f"{path}: row {row + 1} (line {start_line}) is malformed: {exc}"
            ) from None
        last_line = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # a blank line
        row += 1
        where = f"{path}: row {row} (line {start_line})"
        if len(record) > len(header) and any(v.strip() for v in record[len(header) :]):
            raise LabelledDataError(
                f"{where} has {len(record)} fields but the header has {len(header)} "
                "(an unquoted comma or a shifted row?)"
            )
        for name in wanted:
            if position[name] >= len(record):
                raise LabelledDataError(
                    f"{where}, column {name!r}: missing; the row has {len(record)} fields, "
                    f"the header {len(header)}"
                )
        label = record[position[label_column]].strip()
        if not label:
            raise LabelledDataError(f"{where}, column {label_column!r}: empty label")
        if id_column:
            ident = record[position[id_column]].strip()
            if not ident:
                raise LabelledDataError(f"{where}, column {id_column!r}: empty id")
            ids.append(ident)
        texts.append(" ".join(record[position[c]] for c in text_columns))
        labels.append(label)
    if not texts:
        raise LabelledDataError(f"{path}: no data rows after the header")
    return LabelledTexts(texts=texts, labels=labels, ids=ids if id_column else None, source=str(path))


def drop_conflicting_duplicates(data: LabelledTexts) -> LabelledTexts:
    """One record per id: repeats with the same label keep the first; ids whose rows disagree are dropped.

    When one record carries two labels there is no telling which is right, and
    keeping both would put the same text on both sides of a split with
    opposite answers. The ids dropped are listed in the result's notes.
    """
    if data.ids is None:
        return data
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, ident in enumerate(data.ids):
        rows_of[ident].append(i)
    keep: list[int] = []
    conflicting: list[str] = []
    repeats = 0
    for ident, rows in rows_of.items():
        if len({data.labels[i] for i in rows}) > 1:
            conflicting.append(ident)
            continue
        keep.append(rows[0])
        repeats += len(rows) - 1
    keep.sort()
    result = data.subset(keep)
    if repeats:
        result.notes.append(f"{repeats} repeated row(s) with the same id and label dropped (first kept)")
    if conflicting:
        dropped = sum(len(rows_of[i]) for i in conflicting)
        labels = "; ".join(
            f"{i}: {' / '.join(sorted({data.labels[r] for r in rows_of[i]}))}" for i in sorted(conflicting)
        )
        result.notes.append(
            f"{dropped} row(s) of {len(conflicting)} id(s) with conflicting labels dropped ({labels})"
        )
    return result
