"""Real webhook receivers for tests: local HTTP servers that accept, answer an error status, hang,
or close the connection, as told, attempt by attempt, and keep what they were sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

HANG, CLOSE, HOLD = "hang", "close", "hold"  # besides a status code: what an attempt meets


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes
    answer: str  # what it met: a status code, "hang", "close" or "hold"

    def verified(self, secret: str) -> dict[str, Any]:
        """The message, verified by the Standard Webhooks reference library (raises if it does not verify)."""
        return Webhook(secret).verify(self.body, self.headers)  # type: ignore[no-any-return]

    @property
    def message(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    """Answers the n-th POST with `answers[n]` (then 200): a status code, HANG (no answer for longer
    than a delivery waits), CLOSE (the connection closed without an answer) or HOLD (no answer until
    `release()`)."""

    def __init__(self, answers: Sequence[int | str] = (), location: str | None = None) -> None:
        self.answers, self.received = list(answers), []
        self.released, self.closing, self.lock = threading.Event(), threading.Event(), threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    answer = str(receiver.answers.pop(0)) if receiver.answers else "200"
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, answer))
                if answer == HANG:
                    receiver.closing.wait(8)  # longer than the 5 s a delivery waits (or until closed)
                elif answer == HOLD:
                    receiver.released.wait(60)
                if answer in (HANG, CLOSE, HOLD):
                    self.close_connection = True
                    return
                self.send_response(int(answer))
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self._headers_buffer.append(b"\r\nok")  # one write, headers and body (no Nagle wait)
                self.flush_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def release(self) -> None:
        self.released.set()

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def accepted_ids(self) -> set[str]:
        """webhook-ids of the messages it answered 2xx (a receiver deduplicates by them)."""
        return {r.headers["webhook-id"] for r in self.messages() if r.answer.startswith("2")}

    def close(self) -> None:
        self.closing.set()
        self.release()
        self.server.shutdown()
        self.server.server_close()
