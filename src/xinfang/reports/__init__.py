"""PDF reports: Jinja2 templates rendered by WeasyPrint with packaged CJK fonts."""

from xinfang.reports.render import RenderResult, render_pdf

__all__ = ["RenderResult", "render_pdf"]
