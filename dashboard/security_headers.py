"""Response headers that keep the browser on our side: a Content-Security-Policy without inline scripts,
no framing, no MIME sniffing, no referrers (acknowledge links carry a signed token in the path), and no
caching of anything but the static files (every page and API answer may hold personal data). The API docs
page is no exception: Swagger UI is served from this server (the swagger-ui-bundle package), so the docs
work on an offline gateway under the same policy as every page."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages load scripts and styles from /static only: an injected <script> or inline handler does not run.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
STATIC_PREFIX = "/static/"
HEADERS = {
    "x-frame-options": "DENY",  # for browsers that ignore frame-ancestors
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware (not BaseHTTPMiddleware: the alert board's event stream must pass unbuffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(STATIC_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = dict(HEADERS)
                extra["content-security-policy"] = PAGE_CSP
                if not static:
                    extra["cache-control"] = "no-store"
                for name, value in extra.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
