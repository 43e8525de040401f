"""STAND-INS inside the loopback hub of tests/hubprocess.py (imported by the hub, never by the tests):
a proxy that keeps the hub's routes and routes nothing (the tests talk to the hub's own port), and a
spawner that starts no server (TLJH's would make Unix users on this machine)."""

from jupyterhub.proxy import Proxy
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Bool


class NoProxy(Proxy):
    """Keeps what JupyterHub's Proxy interface asks it to keep (jupyterhub/proxy.py), routes nothing."""

    should_start = Bool(False)
    routes: dict = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


class NoSpawner(Spawner):
    async def start(self):
        raise web.HTTPError(503, "no servers on the loopback hub (tests/hubprocess.py)")

    async def stop(self, now=False):
        pass

    async def poll(self):
        return 0
