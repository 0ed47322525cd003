"""A marketplace's receiver on 127.0.0.1: verifies each delivery's signature as the README
tells a receiver to, keeps what it accepted, and can be taken down (answers 503)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from handwork_payments.events.signing import SIGNATURE_HEADER, verify

SECRET = "whsec_marketplace_test_secret"


class Receiver:
    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused_signatures = 0
        self.down = False
        self.attempts_while_down = 0
        self.lock = threading.Lock()
        self.url = ""

    def ids(self) -> list[str]:
        with self.lock:
            return [e["id"] for e in self.accepted]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.accepted if e["type"] == event_type]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if receiver.down:
                with receiver.lock:
                    receiver.attempts_while_down += 1
                self._answer(503)
                return
            header = self.headers.get(SIGNATURE_HEADER, "")
            if not verify(body, header, SECRET, now=int(time.time())):
                with receiver.lock:
                    receiver.refused_signatures += 1
                self._answer(400)
                return
            with receiver.lock:
                receiver.accepted.append(json.loads(body))
            self._answer(200)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/handwork"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
