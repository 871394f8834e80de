"""The live weight-map explorer: a local web server (``python analyze.py explore=RUN_DIR``) that
answers each click on the page with the clicked pixel's exact maps (:class:`analysis.explorer.Scene`),
the model loaded once.

It serves the page and three answers computed from the images it was given, never a file: any other
path, one that leads out of the run included, is refused (404).

    GET /                                  the page (analysis/explorer.html, live)
    GET /api/scene?image=I                 image I: its pictures, hole, predicted pixels, phi_p windows
    GET /api/maps?image=I&row=R&col=C      pixel (R, C) of image I: its maps (float32), phi_p, centroid
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from analysis.explorer import Scene
from analysis.explorer_page import live_payload, maps_payload, page, scene_payload
from inpaint.errors import InpaintError

log = logging.getLogger(__name__)


class Explorer:
    """What the server answers: ``scenes[i]`` made on first use by ``make_scene(i)`` (an image's
    exemplar field is found once), one request computed at a time (the model is shared)."""

    def __init__(self, names: list[str], make_scene: Callable[[int], Scene], svd: dict | None) -> None:
        self.names, self.make_scene, self.svd = names, make_scene, svd
        self.scenes: dict[int, Scene] = {}
        self.lock = threading.Lock()
        self.page = page(live_payload(self.scene(0), names, svd)).encode()

    def scene(self, index: int) -> Scene:
        if not 0 <= index < len(self.names):
            raise InpaintError(f"image {index} is not one of the {len(self.names)} images this explorer shows.")
        with self.lock:
            if index not in self.scenes:
                self.scenes[index] = self.make_scene(index)
            return self.scenes[index]

    def warm(self) -> None:
        """Find the first image's exemplar field (run in a thread while the page loads, so the first
        click costs what any other does)."""
        scene = self.scene(0)
        with self.lock:
            scene.exemplar()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[HTTPStatus, str, bytes]:
        """(status, content type, body) of a GET request."""
        if path in ("/", "/index.html"):
            return HTTPStatus.OK, "text/html; charset=utf-8", self.page
        try:
            number = {key: int(values[0]) for key, values in query.items() if key in ("image", "row", "col")}
            if path == "/api/scene":
                return _json(scene_payload(self.scene(number.get("image", 0))))
            if path == "/api/maps":
                scene = self.scene(number.get("image", 0))
                with self.lock:
                    (maps,) = scene.maps([(number["row"], number["col"])])
                return _json(maps_payload(maps, "float32"))
        except (KeyError, ValueError, InpaintError) as error:
            message = str(error) if isinstance(error, InpaintError) else f"bad request: {error}"
            return HTTPStatus.BAD_REQUEST, "text/plain; charset=utf-8", message.encode()
        return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found: the explorer serves its page and its answers only"


def _json(payload: dict) -> tuple[HTTPStatus, str, bytes]:
    return HTTPStatus.OK, "application/json", json.dumps(payload).encode()


def serve(explorer: Explorer, host: str, port: int) -> ThreadingHTTPServer:
    """A server for ``explorer`` bound to ``host:port`` (port 0: any free one), not yet serving; a
    port in use is one clear error."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            parts = urlsplit(self.path)
            status, kind, body = explorer.answer(parts.path, parse_qs(parts.query))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # http.server's signature
            log.debug(format, *args)

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        raise InpaintError(f"cannot serve the explorer on {host}:{port} ({error.strerror}): pass explorer.port=OTHER "
                           f"(explorer.port=0 takes any free port).") from error
