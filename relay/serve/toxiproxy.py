"""Toxiproxy's REST shape on serve's admin endpoint: the toxics on serve's ports.

Serve's proxies are its own listening ports, by name: `dispatcher`, `relay1`, ...
(each listens and is its own upstream: the toxics act inside the process,
`relay.net.proxy`). The routes are Toxiproxy's, with its JSON and status codes:

    GET    /version
    GET    /proxies                                 {name: proxy}
    GET    /proxies/{proxy}                         the proxy, with its toxics
    GET    /proxies/{proxy}/toxics                  [toxic]
    POST   /proxies/{proxy}/toxics                  add a toxic (409: the name is taken)
    GET    /proxies/{proxy}/toxics/{toxic}          the toxic
    POST   /proxies/{proxy}/toxics/{toxic}          change its attributes or toxicity
    DELETE /proxies/{proxy}/toxics/{toxic}          take it off (204)
    POST   /reset                                   every toxic off (204)

Creating, changing or deleting a proxy is refused (405): the ports are serve's.
The admin endpoint's rules for changes hold here (`relay.serve.admin`).
"""

from __future__ import annotations

from typing import Any

from relay.net.sim import SimNetwork
from relay.net.toxics import Toxic, ToxicError, toxic_from
from relay.serve.httpd import json_of

VERSION = "relaysim (Toxiproxy 2 REST shape)"
PATHS = ("/proxies", "/reset", "/version")


class ProxyError(Exception):
    """A request refused: its HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Proxies:
    """The toxics on serve's ports, as Toxiproxy's API shows them.

    `net` holds the toxics (the simulated network of serve's toxic proxy, or of a
    simulated-network run); `ports` names the listening addresses."""

    def __init__(self, net: SimNetwork, ports: dict[str, tuple[str, int]]) -> None:
        self.net = net
        self.ports = ports

    @staticmethod
    def routes(path: str) -> bool:
        """Whether `path` is one of these routes."""
        return path in PATHS or path.startswith("/proxies/")

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer one request: (status, JSON document or None for no content);
        ProxyError for a request refused."""
        parts = path.strip("/").split("/")
        if parts == ["version"] and method == "GET":
            return 200, {"version": VERSION}
        if parts == ["reset"] and method == "POST":
            self.net.reset()
            return 204, None
        if parts[0] != "proxies" or len(parts) > 4 or (len(parts) > 2 and parts[2] != "toxics"):
            raise ProxyError(404, f"not found: {path}")
        if len(parts) == 1:
            if method == "GET":
                return 200, {name: self.proxy(name) for name in self.ports}
            raise ProxyError(405, "serve's proxies are its own ports; they cannot be created")
        name = parts[1]
        if name not in self.ports:
            known = ", ".join(self.ports)
            raise ProxyError(404, f"proxy not found: {name!r} (serve's proxies: {known})")
        if len(parts) == 2:
            if method == "GET":
                return 200, self.proxy(name)
            raise ProxyError(405, f"proxy {name} is serve's port; it cannot be changed or deleted")
        address = self.ports[name]
        if len(parts) == 3:
            if method == "GET":
                return 200, [t.to_json() for t in self.net.toxics(address)]
            if method == "POST":
                return 200, self._add(address, _valid(_json(body)))
            raise ProxyError(405, f"method {method} not allowed on {path}")
        toxic = self._find(address, parts[3])
        if method == "GET":
            return 200, toxic.to_json()
        if method == "DELETE":
            self.net.remove_toxic(address, toxic.name)
            return 204, None
        if method == "POST":
            change = _json(body)
            if not isinstance(change, dict):
                raise ProxyError(400, "body: expected a JSON object")
            if change.get("name", toxic.name) != toxic.name:
                raise ProxyError(400, "name: a toxic keeps its name; delete it and add another")
            merged = {**toxic.to_json(), **change}
            merged["attributes"] = {**toxic.attributes, **(change.get("attributes") or {})}
            updated = _valid(merged)
            self.net.remove_toxic(address, toxic.name)
            return 200, self._add(address, updated)
        raise ProxyError(405, f"method {method} not allowed on {path}")

    def proxy(self, name: str) -> dict[str, Any]:
        """Toxiproxy's JSON of proxy `name`."""
        host, port = self.ports[name]
        listen = f"{host}:{port}"
        toxics = [t.to_json() for t in self.net.toxics((host, port))]
        return {
            "name": name,
            "listen": listen,
            "upstream": listen,
            "enabled": True,
            "toxics": toxics,
        }

    def toxics(self) -> dict[str, list[dict[str, Any]]]:
        """The toxics on each proxy that has any."""
        return {
            name: [t.to_json() for t in self.net.toxics(address)]
            for name, address in self.ports.items()
            if self.net.toxics(address)
        }

    def _add(self, address: tuple[str, int], toxic: Toxic) -> dict[str, Any]:
        try:
            self.net.add_toxic(address, toxic)
        except ToxicError as exc:
            raise ProxyError(409, str(exc)) from None
        return toxic.to_json()

    def _find(self, address: tuple[str, int], name: str) -> Toxic:
        for toxic in self.net.toxics(address):
            if toxic.name == name:
                return toxic
        raise ProxyError(404, f"toxic not found: {name!r}")


def _json(body: bytes) -> Any:
    try:
        return json_of(body or b"null")
    except ValueError:
        raise ProxyError(400, "body: expected a JSON object like Toxiproxy's toxic") from None


def _valid(doc: Any) -> Toxic:
    try:
        return toxic_from(doc, "toxic")
    except ToxicError as exc:
        raise ProxyError(400, str(exc)) from None
