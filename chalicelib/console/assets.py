"""Static files of the console (`/console`) and of the API reference (`/docs`), shipped in the package.

Files live in `static/` beside this module (packaged with `chalicelib/`, so they count toward the Lambda
package size). Only names matching `_NAME` that exist there are served — a request can never walk out of
the directory. Every response carries `CONSOLE_CSP`: scripts and styles only from this origin (no
`unsafe-inline`, no `eval`), API calls only to this origin, no framing of the console by other sites, no
native form submission (the sign-in form is handled by script; a GET submit would put the key in a URL); the
sandboxed `srcdoc` iframe that shows a message's sanitized HTML inherits it (HTML Living Standard,
"initialising a new Document object": `about:srcdoc` documents inherit the policy container).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from chalice import Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
               "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|html)$")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "html": "text/html; charset=utf-8"}


@lru_cache(maxsize=64)
def load(name: str) -> tuple[str, str] | None:
    """(text, content type) of a static file, or None when `name` is not one."""
    match = _NAME.match(name)
    path = STATIC_DIR / name
    if match is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8"), _TYPES[match.group(1)]


def headers(content_type: str, csp: str = CONSOLE_CSP) -> dict[str, str]:
    """The console's and the reference's headers: `X-Frame-Options: DENY` (RFC 7034) repeats CSP
    `frame-ancestors 'none'` for browsers that predate it."""
    return {"Content-Type": content_type, "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def slash_redirect(request_path: str | None, page: str) -> Response | None:
    """A 308 from `<page>/` to `<page>`, or None when the request path has no trailing slash.

    API Gateway (and Chalice's local server) route `/console/` to the `/console` route, but a browser resolves
    the page's relative links (`console/app.js`, `docs/docs.css`, `v1/openapi.json`) against the path it
    asked for, so the page would load without its scripts and styles. The `Location` is relative (RFC 9110
    §10.2.2: a URI reference, resolved against the request URI), `../console` from `/dev/console/`, so the
    redirect holds under an API Gateway stage prefix as well."""
    if not (request_path or "").endswith(f"/{page}/"):
        return None
    return Response(body=f"Moved to ../{page}\n", status_code=308,
                    headers={"Location": f"../{page}", "Content-Type": "text/plain; charset=utf-8",
                             "Cache-Control": "no-cache"})
