"""Plays the class hub for the health check (tests/pipeline/test_workflows.py): /hub/health, /hub/api and the
status service, as a handler for http.server. `page`: answer as classimage's own page on port 80
does while TLJH installs (the status; 503 for the rest)."""

from __future__ import annotations

import http.server
import json

STATUS_PATH = "/services/classimage-status/"  # provision.SERVICE_PATH (the sandbox imports no classimage)


class Hub(http.server.BaseHTTPRequestHandler):
    state = "ready"
    page = False

    def do_GET(self):
        answers = {"/hub/health": {}, "/hub/api": {"version": "5.2.1"},
                   STATUS_PATH: {"state": self.state, "stage": "full",
                                 "failed_step": None if self.state == "ready" else "pip-packages"}}
        if self.path not in answers or (self.page and self.path != STATUS_PATH):
            self.send_error(503 if self.page else 404)
            return
        body = json.dumps(answers[self.path]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
