"""The pre-start wait: a dependency still starting is normal, so it is waited for quietly."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from iris_services.common.wait import wait_for_http
from tests.conftest import free_port


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_waits_quietly_for_a_dependency_that_starts_late(caplog):
    port = free_port()
    server: list[ThreadingHTTPServer] = []

    def start_late() -> None:
        time.sleep(1.5)
        server.append(ThreadingHTTPServer(("127.0.0.1", port), _Ok))
        server[0].serve_forever()

    threading.Thread(target=start_late, daemon=True).start()
    caplog.set_level(logging.DEBUG)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/health", 20, max_delay_s=0.5)
    finally:
        if server:
            server[0].shutdown()
    said = [r for r in caplog.records if r.name == "iris_services.common.wait"]
    assert [r.levelname for r in said] == ["INFO"], [r.getMessage() for r in said]


def test_gives_up_at_its_deadline_with_one_warning_or_at_once_when_stopped(caplog):
    url = f"http://127.0.0.1:{free_port()}/health"
    caplog.set_level(logging.INFO)
    t0 = time.monotonic()
    assert not wait_for_http(url, 1.0, max_delay_s=0.2)
    assert time.monotonic() - t0 < 5
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    stop = threading.Event()
    stop.set()
    t0 = time.monotonic()
    assert not wait_for_http(url, 60, stop=stop)
    assert time.monotonic() - t0 < 5
