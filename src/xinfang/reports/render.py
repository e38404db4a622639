"""Render a Jinja2 HTML template to PDF with WeasyPrint.

Report text comes from petitions and hotline tickets, so it is untrusted: it is
HTML-escaped by Jinja's autoescape, and WeasyPrint gets a URL fetcher that
serves only our own assets and templates, so even markup that slipped through
could not make the renderer read a local file or reach the network.
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from xinfang.reports import charts, formatting
from xinfang.reports.fonts import (
    ASSETS_DIR,
    allowed_font_files,
    fallback_face_bytes,
    fallback_font_path,
    font_face_css,
    uncovered_chars,
)

log = logging.getLogger(__name__)


class FetchRefused(ValueError):
    """A resource outside the allowed folders was asked for."""


class SafeURLFetcher(URLFetcher):
    """Serves ``file:`` URLs under the allowed folders (or exact files); refuses all else.

    Paths are resolved before the check, so neither ``..`` nor a symlink can
    lead outside. Refused URLs are kept in memory (for tests and diagnostics)
    but never logged, as they may carry source text.
    """

    def __init__(self, roots: Iterable[Path], files: Iterable[Path] = ()) -> None:
        super().__init__(allowed_protocols=("file",), allow_redirects=False)
        self.roots = tuple(Path(root).resolve() for root in roots)
        self.files = frozenset(Path(f).resolve() for f in files)
        self.refused: list[str] = []
        self.served: list[Path] = []

    def _allowed(self, path: Path) -> bool:
        return path in self.files or any(path.is_relative_to(root) for root in self.roots)

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            self.refused.append(url)
            log.warning("refused to fetch a %s: resource", parts.scheme or "relative")
            raise FetchRefused("only packaged report assets may be loaded")
        try:
            path = Path(url2pathname(unquote(parts.path))).resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            self.refused.append(url)
            raise FetchRefused("resource not found") from exc
        if not self._allowed(path) or not path.is_file():
            self.refused.append(url)
            log.warning("refused to fetch a file outside the report assets")
            raise FetchRefused("file outside the report assets")
        self.served.append(path)
        if path == fallback_font_path():
            return URLFetcherResponse(
                path.as_uri(), body=fallback_face_bytes(), headers={"Content-Type": "font/otf"}
            )
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), body=path.read_bytes(), headers={"Content-Type": mime})


@dataclass(frozen=True)
class RenderResult:
    path: Path
    pages: int
    seconds: float
    # Distinct characters of the context that the body font lacks (set in the fallback face).
    uncovered_chars: int
    refused_urls: tuple[str, ...] = field(default=(), repr=False)


# Warm state shared by all renders in a process. WeasyPrint's font configuration
# and parsed @font-face rules cost more than the layout of a two-page report, and
# registering a 33 MB fallback font with Fontconfig is paid only once this way.
_LOCK = threading.Lock()
_FONT_CONFIG: FontConfiguration | None = None
_FONT_CSS: CSS | None = None
_ENVIRONMENTS: dict[Path, Environment] = {}


def _font_state() -> tuple[FontConfiguration, CSS]:
    global _FONT_CONFIG, _FONT_CSS
    if _FONT_CONFIG is None or _FONT_CSS is None:
        font_config = FontConfiguration()
        fetcher = SafeURLFetcher([ASSETS_DIR], allowed_font_files())
        _FONT_CSS = CSS(string=font_face_css(), font_config=font_config, url_fetcher=fetcher)
        _FONT_CONFIG = font_config
    return _FONT_CONFIG, _FONT_CSS


def _bar_chart(items: Sequence[Mapping[str, Any]], label: str, value: str, **kwargs: Any) -> Markup:
    svg = charts.bar_chart_svg(
        [str(item[label]) for item in items], [item[value] for item in items], **kwargs
    )
    # Trusted: charts.py escapes every piece of text it writes.
    return Markup(svg)  # noqa: S704


def _line_chart(
    x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]], **kwargs: Any
) -> Markup:
    # Trusted for the same reason as _bar_chart.
    return Markup(charts.line_chart_svg(x_labels, series, **kwargs))  # noqa: S704


def _band_chart(
    x_labels: Sequence[str],
    actual: Sequence[float | None],
    bands: Sequence[Mapping[str, float] | None],
    **kwargs: Any,
) -> Markup:
    # Trusted for the same reason as _bar_chart.
    return Markup(charts.band_chart_svg(x_labels, actual, bands, **kwargs))  # noqa: S704


def make_environment(templates_dir: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=True,
        undefined=StrictUndefined,
        # A missing figure prints as an em dash, never as "None" (as formatting.MISSING).
        finalize=lambda value: formatting.MISSING if value is None else value,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=formatting.fmt_number,
        int=formatting.fmt_int,
        pct=formatting.fmt_pct,
        # The half-year summary's style: 85%, 92.3%; 12 and 11.5.
        pct_short=formatting.pct,
        num_short=formatting.number,
    )
    env.globals.update(
        change=formatting.fmt_change, bar_chart=_bar_chart, line_chart=_line_chart, band_chart=_band_chart
    )
    return env


def _environment(templates_dir: Path) -> Environment:
    if templates_dir not in _ENVIRONMENTS:
        _ENVIRONMENTS[templates_dir] = make_environment(templates_dir)
    return _ENVIRONMENTS[templates_dir]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield from _strings(dataclasses.asdict(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _write_atomically(document: Any, out_path: Path, pdf_variant: str | None = None) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # Our subsets carry no hints, so "keep hints" only skips fontTools' slow hint-stripping pass.
            document.write_pdf(handle, hinting=True, pdf_variant=pdf_variant)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def render_pdf(
    template_name: str,
    context: Mapping[str, Any],
    out_path: Path,
    *,
    templates_dir: Path,
    pdf_variant: str | None = None,
) -> RenderResult:
    """Render ``template_name`` with ``context`` to ``out_path`` (replaced atomically).

    ``pdf_variant`` is WeasyPrint's, e.g. ``"pdf/a-3b"`` for the archive copy.
    """
    started = time.perf_counter()
    templates_dir = templates_dir.resolve()
    with _LOCK:
        html_text = _environment(templates_dir).get_template(template_name).render(**context)
        font_config, font_css = _font_state()
        fetcher = SafeURLFetcher([ASSETS_DIR, templates_dir], allowed_font_files())
        html = HTML(string=html_text, base_url=templates_dir.as_uri() + "/", url_fetcher=fetcher)
        document = html.render(stylesheets=[font_css], font_config=font_config)
        _write_atomically(document, out_path, pdf_variant)
    seconds = time.perf_counter() - started
    missing = uncovered_chars(_strings(context))
    log.info(
        "rendered %s: %d pages in %.2f s, %d characters in the fallback font, %d fetches refused",
        template_name,
        len(document.pages),
        seconds,
        len(missing),
        len(fetcher.refused),
    )
    return RenderResult(
        path=out_path,
        pages=len(document.pages),
        seconds=seconds,
        uncovered_chars=len(missing),
        refused_urls=tuple(fetcher.refused),
    )
