"""The UI's pages and static assets.

Every page path answers the same HTML shell; the shell's script picks the page from
``location.pathname``. Assets are read once from the package, held in memory and served with
an ETag (a revalidation costs one 304). A strict Content-Security-Policy means the pages can
load nothing but these files and talk to nothing but this server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard import errors

router = APIRouter(include_in_schema=False)

#: The UI's URL paths (each serves the shell). Run ids are validated by the API, not here.
PAGES = ("/", "/runs/{run_id}", "/compare", "/workers", "/queue", "/notifications",
         "/login")
ASSET_PREFIX = "/ui/"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file under ``static/`` by its relative POSIX path (read once)."""
    out: dict[str, Asset] = {}
    root = resources.files(__package__ or "runyard.server.ui") / "static"

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, name + "/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if suffix not in _TYPES:
                continue
            body = child.read_bytes()
            out[name] = Asset(body, _TYPES[suffix],
                              '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    walk(root, "")
    if "index.html" not in out:
        raise errors.RunyardError("the web UI's index.html is missing from the package")
    return out


_ASSETS: dict[str, Asset] | None = None


def assets() -> dict[str, Asset]:
    global _ASSETS
    if _ASSETS is None:
        _ASSETS = load_assets()
    return _ASSETS


def _send(request: Request, asset: Asset) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def shell(request: Request) -> Response:
    """The HTML shell of every page."""
    return _send(request, assets()["index.html"])


for _path in PAGES:
    router.add_api_route(_path, shell, methods=["GET"], include_in_schema=False)


@router.get(ASSET_PREFIX + "{name:path}")
def asset(name: str, request: Request) -> Response:
    """A packaged asset; anything else is 404 (names are looked up, never joined to paths)."""
    found = assets().get(name)
    if found is None:
        raise errors.NotFound(f"no UI asset {name!r}")
    return _send(request, found)
