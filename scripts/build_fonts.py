"""Build the pre-subset CJK fonts that the PDF reports embed.

Run once on a developer machine with the Debian packages fonts-noto-cjk and
fonts-lxgw-wenkai installed; the output under src/xinfang/assets/fonts/ is
committed, so report rendering never depends on the fonts of the host.

    .venv/bin/python scripts/build_fonts.py

Each face is subset to GB2312 plus the punctuation and symbols reports use plus
every character of the shared sample data, renamed to a stable family name
(XF Song / XF Hei / XF Kai) as the OFL asks of modified versions, and saved
without timestamps being recalculated so a rebuild gives the same bytes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "xinfang" / "assets" / "fonts"
NOTO_DIR = Path("/usr/share/fonts/opentype/noto")
WENKAI_DIR = Path("/usr/share/fonts/truetype/lxgw-wenkai")
SHARED = Path("/work/shared")
TEXT_SOURCES: tuple[Path, ...] = (
    *sorted((SHARED / "data" / "teddy2020_sample").glob("*.csv")),
    SHARED / "seeds" / "halfyear_work_summary_2025H1.txt",
    SHARED / "reference" / "DOMAIN.md",
)
LICENCES = {
    "NotoCJK-copyright.txt": Path("/usr/share/doc/fonts-noto-cjk/copyright"),
    "LXGWWenKai-copyright.txt": Path("/usr/share/doc/fonts-lxgw-wenkai/copyright"),
}
# Symbols report text and charts use that are not all in GB2312.
REPORT_SYMBOLS = "▲▼△▽■□●○◆◇★☆↑↓←→↗↘±×÷≥≤≠≈∑√∞％‰℃—–…·•※№〇、。「」『』【】《》〈〉￥"
# Layout features worth their bytes for horizontal CJK text with Latin figures.
LAYOUT_FEATURES = ["kern", "palt", "halt", "locl", "ccmp", "liga", "tnum", "pnum"]


@dataclass(frozen=True)
class FaceSpec:
    source: Path
    # PostScript name (nameID 6) of the face to pick from a collection; None for single-face files.
    ttc_ps_name: str | None
    family: str
    style: str  # "Regular" or "Bold"
    out_name: str


# No Hei Bold: GB/T 9704 sets headings in regular 黑体, and the 2.9 MB it costs would push the
# folder past its 15 MB budget. Templates must therefore never ask for bold XF Hei.
FACES: tuple[FaceSpec, ...] = (
    FaceSpec(NOTO_DIR / "NotoSerifCJK-Bold.ttc", "NotoSerifCJKsc-Bold", "XF Song", "Bold", "XFSong-Bold.otf"),
    FaceSpec(
        NOTO_DIR / "NotoSansCJK-Regular.ttc",
        "NotoSansCJKsc-Regular",
        "XF Hei",
        "Regular",
        "XFHei-Regular.otf",
    ),
    FaceSpec(WENKAI_DIR / "LXGWWenKai-Regular.ttf", None, "XF Kai", "Regular", "XFKai-Regular.ttf"),
    FaceSpec(WENKAI_DIR / "LXGWWenKai-Bold.ttf", None, "XF Kai", "Bold", "XFKai-Bold.ttf"),
)


def gb2312_chars() -> set[str]:
    chars: set[str] = set()
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        try:
            ch.encode("gb2312")
        except UnicodeEncodeError:
            continue
        chars.add(ch)
    return chars


def _ranges(*spans: tuple[int, int]) -> set[str]:
    return {chr(cp) for start, end in spans for cp in range(start, end + 1)}


def wanted_chars(text_sources: Iterable[Path]) -> set[str]:
    chars = gb2312_chars()
    chars |= _ranges(
        (0x20, 0x7E),  # printable ASCII
        (0xA0, 0xFF),  # Latin-1 supplement
        (0x2000, 0x206F),  # General Punctuation
        (0x3000, 0x303F),  # CJK Symbols and Punctuation
        (0xFF00, 0xFFEF),  # Halfwidth and Fullwidth Forms
    )
    chars |= set(REPORT_SYMBOLS)
    for path in text_sources:
        chars |= set(path.read_text(encoding="utf-8"))
    return {ch for ch in chars if ch.isprintable() or ch == "\u3000"}


def _open_face(spec: FaceSpec) -> TTFont:
    if spec.ttc_ps_name is None:
        return TTFont(spec.source, recalcTimestamp=False, lazy=False)
    # Face order inside Noto's collections differs between files and releases, so pick by name.
    collection = TTCollection(spec.source, lazy=True)
    for index, face in enumerate(collection.fonts):
        if face["name"].getDebugName(6) == spec.ttc_ps_name:
            return TTFont(spec.source, fontNumber=index, recalcTimestamp=False, lazy=False)
    raise SystemExit(f"{spec.source}: no face named {spec.ttc_ps_name!r}")


def _rename(font: TTFont, spec: FaceSpec) -> None:
    name = font["name"]
    source_full = name.getDebugName(4)
    ps_family = spec.family.replace(" ", "")
    names = {
        1: spec.family,
        2: spec.style,
        3: f"{ps_family}-{spec.style};subset of {source_full}",
        4: f"{spec.family} {spec.style}",
        6: f"{ps_family}-{spec.style}",
        16: spec.family,
        17: spec.style,
        10: f"Subset of {source_full} for xinfang-dw reports (GB2312 + report symbols).",
    }
    # Drop localized family names too, or fontconfig would still see the original family.
    name.names = [rec for rec in name.names if rec.nameID not in names and rec.nameID not in (18, 21, 22)]
    for name_id, value in names.items():
        name.setName(value, name_id, 3, 1, 0x409)
        name.setName(value, name_id, 1, 0, 0)
    if "CFF " in font:
        cff = font["CFF "].cff
        cff.fontNames = [names[6]]
        top = cff.topDictIndex[0]
        top.FullName = names[4]
        top.FamilyName = spec.family


def build_face(spec: FaceSpec, chars: frozenset[str], out_dir: Path) -> tuple[str, int, int]:
    font = _open_face(spec)
    options = subset.Options()
    options.layout_features = LAYOUT_FEATURES
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.desubroutinize = False
    options.drop_tables += ["vhea", "vmtx", "VORG", "BASE", "DSIG"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(ch) for ch in chars])
    subsetter.subset(font)
    _rename(font, spec)
    out = out_dir / spec.out_name
    tmp = out.with_suffix(out.suffix + ".tmp")
    font.save(tmp)
    tmp.replace(out)
    return spec.out_name, len(font.getBestCmap()), out.stat().st_size


def _debian_version(package: str) -> str:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def _font_version(spec: FaceSpec) -> str:
    return _open_face(spec)["name"].getDebugName(5) or "unknown"


def write_readme(out_dir: Path, results: list[tuple[str, int, int]], n_chars: int) -> None:
    sizes = {name: (covered, size) for name, covered, size in results}
    rows = []
    for spec in FACES:
        covered, size = sizes[spec.out_name]
        source = spec.source.name + (f" (face “{spec.ttc_ps_name}”)" if spec.ttc_ps_name else "")
        licence = "NotoCJK-copyright.txt" if "noto" in str(spec.source) else "LXGWWenKai-copyright.txt"
        rows.append(
            f"| `{spec.out_name}` | {spec.family} | {spec.style} | {source}, {_font_version(spec)} "
            f"| {covered} | {size / 1e6:.2f} MB | OFL-1.1 ([{licence}]({licence})) |"
        )
    text = f"""# Report fonts

Generated by `scripts/build_fonts.py` — do not edit by hand; rerun the script instead.

Source packages (Debian): fonts-noto-cjk {_debian_version("fonts-noto-cjk")},
fonts-lxgw-wenkai {_debian_version("fonts-lxgw-wenkai")}.

| file | CSS family | style | source face, version | code points | size | licence |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Roles (GB/T 9704-2012): title = XF Song Bold (小标宋 role), level-1 headings = XF Hei,
level-2 headings and body = XF Kai (楷体 / 仿宋 role). There is deliberately no bold XF Hei
(GB/T 9704 headings are regular 黑体, and it would cost 2.9 MB); WeasyPrint does not synthesise
bold, so templates must not request `font-weight: bold` on XF Hei.

## Character set ({n_chars} requested code points)

- every character encodable in GB2312 (6,763 hanzi plus its symbols);
- printable ASCII, Latin-1 supplement, General Punctuation (U+2000–206F),
  CJK Symbols and Punctuation (U+3000–303F), Halfwidth and Fullwidth Forms (U+FF00–FFEF);
- report symbols: `{REPORT_SYMBOLS}`;
- every character of the shared sample texts (`teddy2020_sample/*.csv`,
  `halfyear_work_summary_2025H1.txt`, `DOMAIN.md`).

Characters outside this set fall back at render time to the full Noto Sans CJK from
the `manimgx-fonts-cjk` PyPI package (see `xinfang.reports.fonts`).

Layout features kept: {", ".join(LAYOUT_FEATURES)}; vertical metrics and hinting are dropped.

## Licence

All faces are under the SIL Open Font License 1.1. They are modified (subset) versions
and so carry new family names; the Reserved Font Name "Source" of Noto CJK is not used.
The licence texts are the Debian copyright files of the source packages, copied verbatim.
"""
    (out_dir / "README.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    chars = frozenset(wanted_chars(TEXT_SOURCES))
    print(f"{len(chars)} code points requested", flush=True)
    with ProcessPoolExecutor(max_workers=len(FACES)) as pool:
        futures = [pool.submit(build_face, spec, chars, out_dir) for spec in FACES]
        results = [future.result() for future in futures]
    for name, covered, size in results:
        print(f"{name}: {covered} code points, {size / 1e6:.2f} MB")
    for target, source in LICENCES.items():
        shutil.copyfile(source, out_dir / target)
    write_readme(out_dir, results, len(chars))
    total = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    print(f"total {total / 1e6:.2f} MB in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
