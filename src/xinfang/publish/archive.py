"""The report archive: every revision of a report kept, rendered once per distinct content.

A folder holds the PDFs of one period and an index (JSON list) per report
edition. `render_once` compares the content fingerprint (the render context
without its generation time) with the index's latest entry: unchanged content
reuses the archived file (no new revision, so no new e-mail); changed content
becomes revision N+1. The index is replaced atomically, after the PDF.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Archived:
    revision: int
    path: Path
    sha256: str
    rendered: bool  # False when an archived revision with the same content was reused


def fingerprint(context: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(context, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_index(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def render_once(
    index_path: Path,
    content: str,
    file_name: Callable[[int], str],
    render: Callable[[int, Path], dict[str, Any]],
) -> Archived:
    """Reuse the latest revision if its content is `content`, else render revision N+1.

    ``render(revision, path)`` writes the PDF and returns extra index fields
    (pages, rendered_at, ...).
    """
    folder = index_path.parent
    index = read_index(index_path)
    if index and index[-1]["fingerprint"] == content:
        latest = folder / index[-1]["file"]
        if latest.exists() and sha256(latest) == index[-1]["sha256"]:
            return Archived(index[-1]["revision"], latest, index[-1]["sha256"], False)
    revision = (index[-1]["revision"] + 1) if index else 1
    path = folder / file_name(revision)
    extra = render(revision, path)
    digest = sha256(path)
    index.append(
        {
            "revision": revision,
            "file": path.name,
            "sha256": digest,
            "fingerprint": content,
            "bytes": path.stat().st_size,
            **extra,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_name(f".{index_path.name}.tmp")
    tmp.write_text(json.dumps(index, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(index_path)
    return Archived(revision, path, digest, True)


def latest(index_path: Path) -> Archived | None:
    """The index's latest revision, verified against its recorded checksum; None when there is none."""
    index = read_index(index_path)
    if not index:
        return None
    last = index[-1]
    path = index_path.parent / last["file"]
    if not path.exists() or sha256(path) != last["sha256"]:
        raise RuntimeError(f"{path}: archived report missing or changed since it was recorded")
    return Archived(last["revision"], path, last["sha256"], False)
