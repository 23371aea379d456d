"""`GET /console`: the web console, a static page served by the service itself (no
internet, no build step: app/static/console, and uPlot under app/static/vendor)."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.static_files import create_static_files_router

CONSOLE = Path(__file__).resolve().parent.parent / "static" / "console"
# Everything from the service itself; no inline script or style, no frames, no plugins.
POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
    " frame-ancestors 'none'; form-action 'self'"
)
_PAGE = (CONSOLE / "index.html").read_bytes()


@get(["/console", "/console/"], include_in_schema=False, sync_to_thread=False)
def console_page() -> Response[bytes]:
    return Response(
        _PAGE,
        media_type="text/html",
        headers={
            "Content-Security-Policy": POLICY,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


console_assets = create_static_files_router(
    "/console/assets", [CONSOLE], include_in_schema=False, name="console-assets"
)
