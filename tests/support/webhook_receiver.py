"""A district centre's system as a real HTTP server: it applies each notice once per
Idempotency-Key, and can be told to stall after applying (to let a test kill the sender)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self) -> None:
        self.applied: dict[str, dict] = {}   # key → body, applied once
        self.deliveries: list[str] = []      # every POST's key, repeats included
        self.stall_first = False
        self.received = threading.Event()
        self.release = threading.Event()
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return  # keep test output quiet

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                key = self.headers.get("Idempotency-Key", "")
                first_ever = not receiver.deliveries
                receiver.deliveries.append(key)
                if receiver.status < 300:
                    receiver.applied.setdefault(key, body)
                receiver.received.set()
                if receiver.stall_first and first_ever:
                    receiver.release.wait(60)  # the sender is killed while we hold its request
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notices"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
