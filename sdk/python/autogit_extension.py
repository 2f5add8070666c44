"""Write an autogit extension in Python (standard library only).

An extension is an executable speaking autogit's extension protocol (JSON-RPC 2.0, one
message per line, on stdin/stdout; see docs/extensions.md). This module does the protocol;
you write the provider::

    from autogit_extension import Extension, DnsProvider, Setting

    class MyDns(DnsProvider):
        settings = [Setting("MYDNS_URL", required=True),
                    Setting("MYDNS_TOKEN", secret=True, required=True)]

        def initialize(self, config, secrets, context): ...
        def list(self, names): return [{"name": ..., "type": "A", "value": ..., "ttl": 300}]
        def apply(self, changes): ...

    Extension("my-dns", "1.0.0").dns(MyDns()).run()

Log to stderr (``log()``): autogit puts each line in its log. Never print to stdout: it is the
protocol's channel.
"""

import base64
import json
import sys
import traceback

PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION",
    "Setting",
    "DnsProvider",
    "NotifyProvider",
    "StorageProvider",
    "AuthProvider",
    "SslProvider",
    "ComputeProvider",
    "Extension",
    "ExtensionError",
    "ConfigError",
    "AuthError",
    "ZoneChanged",
    "Unavailable",
    "NotFound",
    "log",
]


class ExtensionError(Exception):
    """An error answer. ``code`` is a JSON-RPC error code (docs/extensions.md lists autogit's)."""

    code = -32000

    def __init__(self, message, data=None):
        super().__init__(message)
        self.message = message
        self.data = data


class ConfigError(ExtensionError):
    """A setting is wrong."""

    code = -32001


class AuthError(ExtensionError):
    """The backend refused the credentials."""

    code = -32002


class ZoneChanged(ExtensionError):
    """dns.apply: the zone changed since dns.list; nothing was applied (autogit reads again)."""

    code = -32003


class Unavailable(ExtensionError):
    """The backend did not answer: whether the change was applied is unknown."""

    code = -32004


class NotFound(ExtensionError):
    """storage.get / storage.delete: no object of that name; compute.exec: no such host."""

    code = -32005


class Setting:
    """A setting the provider reads from autogit's .env or environment (an upper-case key)."""

    def __init__(self, key, type="string", required=False, secret=False, description=""):
        self.key = key
        self.type = type
        self.required = required
        self.secret = secret
        self.description = description

    def manifest(self):
        return {
            "key": self.key,
            "type": self.type,
            "required": self.required,
            "secret": self.secret,
            "description": self.description,
        }


class DnsProvider:
    """Base class of a ``dns`` provider. Records are dicts:
    ``{"name": "gitlab.example.com", "type": "A", "value": "203.0.113.7", "ttl": 300}``
    (names lower-case without the trailing dot; a TXT value unquoted).
    """

    #: Whether ``apply`` is all or nothing.
    atomic = True
    #: The settings it reads (``Setting``s); secret ones reach ``initialize`` in ``secrets``.
    settings = []

    def initialize(self, config, secrets, context):
        """``config``: the plain settings (typed); ``secrets``: the secret ones; ``context``:
        ``{"zone": "example.com", "ttl": 300}``."""

    def list(self, names):
        """The records of the zone (all of them if you can: autogit finds what it owns)."""
        raise ExtensionError("dns.list is not implemented", None)

    def apply(self, changes):
        """Apply every change, all or nothing if ``atomic``. A change is
        ``{"op": "create"|"delete", "record": r}`` or ``{"op": "update", "from": r, "to": r}``.
        Raise ``ZoneChanged`` if the zone changed since ``list`` (nothing applied),
        ``Unavailable`` if the outcome is unknown."""
        raise ExtensionError("dns.apply is not implemented", None)

    def health(self):
        """``{"status": "ok"|"degraded"|"failing", "detail": "..."}``."""
        return {"status": "ok", "detail": ""}

    def shutdown(self):
        """Called before the process ends (also when initialize never ran)."""


class NotifyProvider:
    """Base class of a ``notify`` provider: ``send`` gets each event autogit notifies about."""

    settings = []

    def initialize(self, config, secrets, context):
        """``config``: the plain settings (typed); ``secrets``: the secret ones."""

    def send(self, message):
        """``message``: ``{"kind", "severity", "subject", "summary", "event"}`` (``event``:
        the whole event as autogit publishes it). Raise ``Unavailable`` if the service did
        not answer."""
        raise ExtensionError("notify.send is not implemented", None)

    def health(self):
        return {"status": "ok", "detail": ""}

    def shutdown(self):
        """Called before the process ends (also when initialize never ran)."""


class StorageProvider:
    """Base class of a ``storage`` provider: where autogit copies backup archives. Objects
    are flat names; archives never travel through the protocol: ``put`` reads the local file
    ``path`` and ``get`` writes it (autogit verifies each copy by reading it back, and keeps
    the SHA-256 as an object ``<name>.sha256`` of its own)."""

    settings = []

    def initialize(self, config, secrets, context):
        """``config``: the plain settings (typed); ``secrets``: the secret ones."""

    def put(self, name, path):
        """Store the file ``path`` as ``name``, replacing an object of that name."""
        raise ExtensionError("storage.put is not implemented", None)

    def get(self, name, path):
        """Write object ``name`` to the file ``path``; raise ``NotFound`` if there is none."""
        raise ExtensionError("storage.get is not implemented", None)

    def list(self):
        """Every object: ``[{"name": ..., "size": bytes}]``."""
        raise ExtensionError("storage.list is not implemented", None)

    def delete(self, name):
        """Delete object ``name``; raise ``NotFound`` (or return) if there is none."""
        raise ExtensionError("storage.delete is not implemented", None)

    def health(self):
        return {"status": "ok", "detail": ""}

    def shutdown(self):
        """Called before the process ends (also when initialize never ran)."""


class AuthProvider:
    """Base class of an ``auth`` provider: a login method for autogit's API and dashboard
    (``"provider": "<extension name>"`` in a login, or ``alice@<extension name>``). autogit
    starts the extension for each login, sends one ``auth.login``, then ``shutdown``."""

    settings = []

    def initialize(self, config, secrets, context):
        """``config``: the plain settings (typed); ``secrets``: the secret ones."""

    def login(self, username, password):
        """``{"name": ..., "role": "viewer" | "operator" | "admin"}`` for right credentials,
        ``None`` for wrong ones (unknown users too). Raise ``Unavailable`` if the backend did
        not answer. Never log the password."""
        raise ExtensionError("auth.login is not implemented", None)

    def health(self):
        return {"status": "ok", "detail": ""}

    def shutdown(self):
        """Called before the process ends (also when initialize never ran)."""


class SslProvider:
    """Base class of an ``ssl`` provider: a certificate source (``TLS_SOURCE=extension:<name>``
    in ``.env``). autogit starts the extension when the platform certificate is due, sends one
    ``ssl.issue`` with the names it must cover (``*.BASE_DOMAIN`` and ``BASE_DOMAIN``), checks
    what comes back (the key is the leaf's, every name covered, valid now) and installs it."""

    settings = []

    def initialize(self, config, secrets, context):
        """``config``: the plain settings (typed); ``secrets``: the secret ones."""

    def issue(self, names):
        """``{"chain": PEM certificates (the leaf first), "key": the leaf's PEM private key}``.
        Raise ``Unavailable`` if the CA did not answer. Never log the key."""
        raise ExtensionError("ssl.issue is not implemented", None)

    def health(self):
        return {"status": "ok", "detail": ""}

    def shutdown(self):
        """Called before the process ends (also when initialize never ran)."""


class ComputeProvider:
    """Base class of a ``compute`` provider: how autogit runs commands on runner hosts it does
    not reach over SSH. A runner whose ``host`` is ``extension:<name>/<host>`` is reached with
    ``exec(host, argv, stdin)``; autogit's inventory probe, scheduler, leases, health checks
    and routes then work on it as on an SSH host."""

    settings = []

    def initialize(self, config, secrets, context):
        """``config``: the plain settings (typed); ``secrets``: the secret ones."""

    def exec(self, host, argv, stdin):
        """Run ``argv`` (a list, never through a shell) on ``host`` with ``stdin`` (bytes) on
        its standard input; return ``{"code": exit status or None if a signal ended it,
        "stdout": str, "stderr": str}``. Raise ``NotFound`` for a host this provider does not
        serve and ``Unavailable`` when the host cannot be reached."""
        raise ExtensionError("compute.exec is not implemented", None)

    def health(self):
        return {"status": "ok", "detail": ""}

    def shutdown(self):
        """Called before the process ends (also when initialize never ran)."""


def log(*parts):
    """One line to stderr: autogit's log."""
    print(*parts, file=sys.stderr, flush=True)


class Extension:
    """An extension: its name (its file name in the extensions directory), version, the
    environment variables it inherits from autogit (``env``), the extensions it needs started
    first (``dependencies``), and its providers."""

    def __init__(self, name, version, description="", env=(), dependencies=()):
        self.name = name
        self.version = version
        self.description = description
        self.env = list(env)
        self.dependencies = list(dependencies)
        self.providers = {}
        self.active = None

    def dns(self, provider):
        self.providers["dns"] = provider
        return self

    def notify(self, provider):
        self.providers["notify"] = provider
        return self

    def storage(self, provider):
        self.providers["storage"] = provider
        return self

    def auth(self, provider):
        self.providers["auth"] = provider
        return self

    def ssl(self, provider):
        self.providers["ssl"] = provider
        return self

    def compute(self, provider):
        self.providers["compute"] = provider
        return self

    def manifest(self):
        providers = []
        secrets = []
        for kind, p in self.providers.items():
            decl = {"type": kind, "config": [s.manifest() for s in p.settings]}
            if kind == "dns":
                decl["atomic"] = bool(p.atomic)
            providers.append(decl)
            secrets.extend(s.key for s in p.settings if s.secret and s.key not in secrets)
        return {
            "name": self.name,
            "version": self.version,
            "protocol_version": PROTOCOL_VERSION,
            "description": self.description,
            "providers": providers,
            "secrets": secrets,
            "env": self.env,
            "dependencies": self.dependencies,
        }

    def _provider(self):
        if self.active is None:
            raise ExtensionError("initialize first", None)
        return self.active

    def _dispatch(self, method, params):
        if method == "handshake":
            if PROTOCOL_VERSION not in params.get("protocol_versions", []):
                raise ExtensionError(
                    "autogit speaks protocol %s; this extension speaks %d"
                    % (params.get("protocol_versions"), PROTOCOL_VERSION)
                )
            return self.manifest()
        if method == "initialize":
            kind = params.get("provider")
            if kind not in self.providers:
                raise ConfigError("this extension does not provide %r" % kind)
            self.active = self.providers[kind]
            self.active.initialize(
                params.get("config", {}), params.get("secrets", {}), params.get("context", {})
            )
            return {}
        if method == "health":
            return self._provider().health()
        if method == "dns.list":
            return {"records": list(self._provider().list(params.get("names", [])))}
        if method == "dns.apply":
            self._provider().apply(params.get("changes", []))
            return {}
        if method == "notify.send":
            self._provider().send(params)
            return {}
        if method == "storage.put":
            self._provider().put(params["name"], params["path"])
            return {}
        if method == "storage.get":
            self._provider().get(params["name"], params["path"])
            return {}
        if method == "storage.list":
            return {"objects": list(self._provider().list())}
        if method == "storage.delete":
            self._provider().delete(params["name"])
            return {}
        if method == "auth.login":
            user = self._provider().login(params.get("username", ""), params.get("password", ""))
            return {"user": user}
        if method == "ssl.issue":
            issued = self._provider().issue(list(params.get("names", [])))
            return {"chain": issued["chain"], "key": issued["key"]}
        if method == "compute.exec":
            out = self._provider().exec(
                params["host"], list(params["argv"]), base64.b64decode(params.get("stdin", ""))
            )
            return {"code": out["code"], "stdout": out["stdout"], "stderr": out["stderr"]}
        if method == "shutdown":
            return {}
        err = ExtensionError("unknown method %s" % method)
        err.code = -32601
        raise err

    def run(self, stdin=None, stdout=None):
        """Answer autogit until ``shutdown`` or the end of input."""
        stdin = stdin or sys.stdin.buffer
        stdout = stdout or sys.stdout.buffer
        try:
            for raw in stdin:
                if not raw.strip():
                    continue
                try:
                    msg = json.loads(raw)
                    rid, method = msg.get("id"), msg["method"]
                except (ValueError, KeyError, AttributeError) as e:
                    self._send(stdout, None, error={"code": -32700, "message": "parse error: %s" % e})
                    continue
                try:
                    result = self._dispatch(method, msg.get("params") or {})
                    self._send(stdout, rid, result=result)
                except ExtensionError as e:
                    error = {"code": e.code, "message": e.message}
                    if e.data is not None:
                        error["data"] = e.data
                    self._send(stdout, rid, error=error)
                except Exception as e:  # an unexpected error is this call's, not the process's
                    log(traceback.format_exc().rstrip())
                    self._send(stdout, rid, error={"code": -32000, "message": "%s: %s" % (type(e).__name__, e)})
                if method == "shutdown":
                    break
        finally:
            for p in self.providers.values():
                try:
                    p.shutdown()
                except Exception:
                    log(traceback.format_exc().rstrip())

    @staticmethod
    def _send(stdout, rid, result=None, error=None):
        msg = {"jsonrpc": "2.0", "id": rid}
        if error is not None:
            msg["error"] = error
        else:
            msg["result"] = result
        stdout.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        stdout.flush()
