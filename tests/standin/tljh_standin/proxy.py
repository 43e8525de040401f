"""TLJH STAND-IN: the proxy TLJH runs traefik for.

Two halves: `StandInProxy`, JupyterHub's Proxy API (add, delete and list routes) keeping the routes
in /opt/tljh/state/rules/routes.json, as TLJH's traefik file provider keeps rules files; and
`python -m tljh_standin.proxy` (traefik.service), an HTTP server on port 80 that forwards each
request to the route with the longest matching prefix, and refuses to start without the API secret
TLJH's installer makes (state/traefik-api.secret), as traefik's rendered config would. Responses carry `X-Served-By: TLJH
stand-in proxy`. No TLS: https settings are checked by the stand-in's config validation only.
"""

import http.client
import http.server
import json
import os
import tempfile
import urllib.parse

from jupyterhub.proxy import Proxy

from tljh_standin import paths

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


def read_routes():
    try:
        with open(paths.ROUTES) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def write_routes(routes):
    os.makedirs(os.path.dirname(paths.ROUTES), exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(paths.ROUTES))
    with os.fdopen(handle, "w") as out:
        json.dump(routes, out, indent=1)
    os.replace(temporary, paths.ROUTES)


class StandInProxy(Proxy):
    """Externally managed (traefik.service), like TLJH's traefik."""

    should_start = False

    async def add_route(self, routespec, target, data):
        routes = read_routes()
        routes[routespec] = {"routespec": routespec, "target": target, "data": data}
        write_routes(routes)

    async def delete_route(self, routespec):
        routes = read_routes()
        routes.pop(routespec, None)
        write_routes(routes)

    async def get_all_routes(self):
        return read_routes()


class Forwarder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        routes = read_routes()
        matches = [spec for spec in routes if self.path.startswith(spec) or self.path + "/" == spec]
        if not matches:
            self.send_error(503, "TLJH stand-in proxy: no route (is the hub up?)")
            return
        target = urllib.parse.urlsplit(routes[max(matches, key=len)]["target"])
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers.setdefault("X-Forwarded-Proto", "http")
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as error:
            self.send_error(502, f"TLJH stand-in proxy: {error}")
            return
        finally:
            connection.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Served-By", "TLJH stand-in proxy")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward

    def log_message(self, format, *args):
        pass


def main():
    # TLJH renders traefik's config with the API secret its installer made; without it, no proxy.
    secret = os.path.join(paths.STATE, "traefik-api.secret")
    try:
        with open(secret) as handle:
            value = handle.read()
    except FileNotFoundError:
        raise SystemExit(f"TLJH stand-in proxy: no {secret}: the proxy's API secret is missing")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SystemExit(f"TLJH stand-in proxy: {secret} is not a 64-character hex secret")
    server = http.server.ThreadingHTTPServer(("", 80), Forwarder)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
