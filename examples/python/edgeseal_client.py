#!/usr/bin/env python3
"""Read this service's secrets and tokens from edgeseal's token socket (standard library only).

    import edgeseal_client as es; es.get("mqtt-password"); es.get_json("db"); es.token()
    python3 edgeseal_client.py get NAME | json NAME | token      (exit 0, 77 denied, 69 unavailable, 1 else)

EDGESEAL_SOCKET names the socket (default /run/edgeseal/token.sock); EDGESEAL_SERVICE, if set, is
asserted (edgeseal refuses when it attests this process as another service)."""
import http.client, json, os, socket, sys, urllib.parse

SOCKET = os.environ.get("EDGESEAL_SOCKET") or "/run/edgeseal/token.sock"
SERVICE = os.environ.get("EDGESEAL_SERVICE") or None


class EdgesealError(Exception):
    def __init__(self, status, message):
        super().__init__(f"edgeseal answered {status}: {message}" if status else message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(SOCKET)


def _call(method, path, body=None):
    conn = _UnixConnection("localhost", timeout=15)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        answer = conn.getresponse()
        status, data = answer.status, answer.read(2 << 20)
    except (OSError, http.client.HTTPException) as e:
        raise EdgesealError(None, f"edgeseal is not available on {SOCKET}: {e} (is edgeseal running?)") from e
    finally:
        conn.close()
    if status != 200:
        try:
            message = json.loads(data)["error"]
        except (ValueError, KeyError, TypeError):
            message = data.decode(errors="replace")
        raise EdgesealError(status, message)
    return json.loads(data)


def get_json(name, version=None):
    """The data object of secret `name` (a dict; a single-value secret is {"value": "..."})."""
    query = {k: v for k, v in (("version", version), ("service", SERVICE)) if v is not None}
    path = "/v1/secrets/" + urllib.parse.quote(name, safe="")
    return _call("GET", path + ("?" + urllib.parse.urlencode(query) if query else ""))["data"]


def get(name, version=None):
    """The value of the single-value secret `name`."""
    data = get_json(name, version)
    if set(data) != {"value"} or not isinstance(data["value"], str):
        raise ValueError(f"secret {name!r} has the keys {sorted(data)}: read it with get_json")
    return data["value"]


def token():
    """An OpenBao token for this service (the token answer's `auth` object: client_token, lease_duration, ...)."""
    return _call("POST", "/v1/token", json.dumps({"service": SERVICE}) if SERVICE else "")["auth"]


if __name__ == "__main__":
    usage = "usage: edgeseal_client.py get NAME | json NAME | token"
    args = sys.argv[1:]
    if not (args[:1] in (["get"], ["json"]) and len(args) == 2 or args == ["token"]):
        print(usage, file=sys.stderr)
        sys.exit(64)
    try:
        if args[0] == "get":
            sys.stdout.write(get(args[1]))
        else:
            print(json.dumps(get_json(args[1]) if args[0] == "json" else token()))
    except (EdgesealError, ValueError) as e:
        print(e, file=sys.stderr)
        sys.exit({403: 77, 429: 75, 502: 69, 503: 69, 504: 69, None: 69}.get(getattr(e, "status", 1), 1))
