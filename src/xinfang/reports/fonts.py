"""The fonts reports are set in: packaged subsets plus one full fallback face.

The subsets under ``xinfang/assets/fonts`` (built by ``scripts/build_fonts.py``)
cover GB2312 and the report symbols. Source text can hold any character, so
every font stack ends with the full Noto Sans CJK from the ``manimgx-fonts-cjk``
package; a rare character then still gets a glyph instead of a tofu box, and we
never depend on whatever fonts the host happens to have.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fontTools.ttLib import TTCollection, TTFont

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
FONTS_DIR = ASSETS_DIR / "fonts"

SONG = "XF Song"
HEI = "XF Hei"
KAI = "XF Kai"
FALLBACK = "XF Fallback"
FALLBACK_PACKAGE = "manimgx_fonts_cjk"
FALLBACK_FILE = "NotoSansCJK-VF.otf.ttc"
# PostScript-name prefix of the Simplified Chinese face in the fallback collection.
FALLBACK_FACE_PREFIX = "NotoSansCJKsc-"


@dataclass(frozen=True)
class FontFace:
    family: str
    weight: int
    path: Path


SUBSET_FACES: tuple[FontFace, ...] = (
    FontFace(SONG, 700, FONTS_DIR / "XFSong-Bold.otf"),
    FontFace(HEI, 400, FONTS_DIR / "XFHei-Regular.otf"),
    FontFace(KAI, 400, FONTS_DIR / "XFKai-Regular.ttf"),
    FontFace(KAI, 700, FONTS_DIR / "XFKai-Bold.ttf"),
)

# Characters that never need a glyph, so are never reported as uncovered.
_INVISIBLE = frozenset("\t\n\r\f\v \u00a0\u200b\u200c\u200d\u2060\ufeff")


@cache
def fallback_font_path() -> Path | None:
    """The full Noto Sans CJK collection of the installed fallback package, if any."""
    spec = importlib.util.find_spec(FALLBACK_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        log.warning("package %s is not installed: rare characters may render as tofu", FALLBACK_PACKAGE)
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / FALLBACK_FILE
        if candidate.is_file():
            return candidate.resolve()
    log.warning("%s has no %s: rare characters may render as tofu", FALLBACK_PACKAGE, FALLBACK_FILE)
    return None


@cache
def fallback_face_bytes() -> bytes:
    """The Simplified Chinese face of the fallback collection, as a single-face font.

    WeasyPrint 70 cannot embed a face of a variable collection (it reopens the
    collection with the Fontconfig instance index and fails), and Fontconfig
    would pick the Japanese face first anyway. Copying one face's tables is
    cheap (well under a second) as long as nothing is recompiled.
    """
    path = fallback_font_path()
    if path is None:
        raise FileNotFoundError(f"{FALLBACK_PACKAGE} is not installed")
    collection = TTCollection(path, lazy=True)
    names = [face["name"].getDebugName(6) or "" for face in collection.fonts]
    index = next((i for i, name in enumerate(names) if name.startswith(FALLBACK_FACE_PREFIX)), None)
    if index is None:
        raise LookupError(f"{path.name} has no {FALLBACK_FACE_PREFIX}* face: {names}")
    face = TTFont(path, fontNumber=index, lazy=True, recalcBBoxes=False, recalcTimestamp=False)
    out = io.BytesIO()
    face.save(out)
    return out.getvalue()


def font_stack(family: str) -> str:
    """A CSS font-family value: the subset family, then the full fallback."""
    return f'"{family}", "{FALLBACK}"'


def font_face_css() -> str:
    """``@font-face`` rules for the packaged subsets and the fallback face."""
    missing = [face.path for face in SUBSET_FACES if not face.path.is_file()]
    if missing:
        raise FileNotFoundError(f"report fonts missing (run scripts/build_fonts.py): {missing}")
    rules = [
        f'@font-face {{ font-family: "{face.family}"; font-weight: {face.weight}; '
        f'src: url("{face.path.as_uri()}"); }}'
        for face in SUBSET_FACES
    ]
    if (fallback := fallback_font_path()) is not None:
        # No weight descriptor: fontconfig then registers the variable font's own named
        # instances, so one 33 MB file (fetched and scanned once) serves every weight.
        rules.append(f'@font-face {{ font-family: "{FALLBACK}"; src: url("{fallback.as_uri()}"); }}')
    return "\n".join(rules) + "\n"


def allowed_font_files() -> frozenset[Path]:
    """Font files outside the assets folder that the URL fetcher may serve."""
    fallback = fallback_font_path()
    return frozenset({fallback}) if fallback is not None else frozenset()


@cache
def _cmap(path: Path) -> frozenset[int]:
    font = TTFont(path, lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def covered_code_points(family: str) -> frozenset[int]:
    """Code points that every packaged face of ``family`` maps (so any weight has them)."""
    faces = [face for face in SUBSET_FACES if face.family == family]
    if not faces:
        raise ValueError(f"unknown report font family: {family!r}")
    return frozenset.intersection(*(_cmap(face.path) for face in faces))


def uncovered_chars(text: str | Iterable[str], family: str = KAI) -> list[str]:
    """Distinct characters of ``text`` that ``family`` has no glyph for, in first-seen order.

    These are the characters that will be set in the fallback face (or, without
    it, as tofu). The default family is the body face, which most source text is in.
    """
    covered = covered_code_points(family)
    seen: dict[str, None] = {}
    for chunk in [text] if isinstance(text, str) else text:
        for ch in chunk:
            if ch not in seen and ord(ch) not in covered and ch not in _INVISIBLE and ch.isprintable():
                seen[ch] = None
    return list(seen)
