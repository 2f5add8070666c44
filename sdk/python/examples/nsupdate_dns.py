#!/usr/bin/env python3
"""A complete ``dns`` extension: the zone read by AXFR with ``dig`` and changed with
``nsupdate``, both signed with a TSIG key (BIND, Knot, PowerDNS...).

Install: link or copy this file as ``<data dir>/extensions/nsupdate-dns`` (next to it, or one
directory up, must be ``autogit_extension.py``), then in ``.env``::

    EXTENSIONS_ENABLED=nsupdate-dns
    DNS_PROVIDER=nsupdate-dns
    NSUPDATE_SERVER=10.0.0.2:53
    NSUPDATE_KEY_NAME=autogit
    NSUPDATE_KEY_SECRET_FILE=/etc/autogit/tsig.secret   # or NSUPDATE_KEY_SECRET=...

The secret reaches it only in ``initialize`` (never argv or environment); it is written to a
0600 key file in a private temporary directory for ``dig -k``/``nsupdate -k`` and removed at
shutdown. ``dns.apply`` is one UPDATE message, conditional on the zone's SOA being the one
``dns.list`` read: all or nothing, and a zone changed in between answers ``ZoneChanged``.
"""

import os
import shutil
import subprocess
import sys
import tempfile

# autogit_extension.py: next to this file, or one directory up (sdk/python/examples/..).
_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_here, os.path.dirname(_here)]

from autogit_extension import (  # noqa: E402
    AuthError,
    ConfigError,
    DnsProvider,
    Extension,
    ExtensionError,
    Setting,
    Unavailable,
    ZoneChanged,
    log,
)

TIMEOUT = 10


def split_server(server):
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server, 53


def txt_value(rdata):
    """The unquoted value of TXT rdata as dig prints it ("a" "b" -> ab)."""
    out, i, s = [], 0, rdata
    while i < len(s):
        if s[i] == '"':
            i += 1
            while i < len(s) and s[i] != '"':
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                out.append(s[i])
                i += 1
        i += 1
    return "".join(out)


def txt_rdata(value):
    """A TXT value as nsupdate reads it: quoted strings of at most 255 bytes."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"%s"' % c.replace("\\", "\\\\").replace('"', '\\"') for c in chunks)


class NsupdateDns(DnsProvider):
    atomic = True
    settings = [
        Setting("NSUPDATE_SERVER", required=True, description="the zone's primary, host[:port]"),
        Setting("NSUPDATE_KEY_NAME", required=True, description="the TSIG key's name"),
        Setting("NSUPDATE_KEY_ALGORITHM", description="hmac-sha256 (default), hmac-sha512, ..."),
        Setting("NSUPDATE_KEY_SECRET", secret=True, required=True, description="the TSIG key (base64)"),
    ]

    def __init__(self):
        self.dir = None
        self.soa = None

    def initialize(self, config, secrets, context):
        for tool in ("dig", "nsupdate"):
            if shutil.which(tool) is None:
                raise ConfigError("%s is not on PATH (install bind9-dnsutils / bind-utils)" % tool)
        self.host, self.port = split_server(config["NSUPDATE_SERVER"])
        self.zone = context["zone"].rstrip(".").lower()
        algorithm = config.get("NSUPDATE_KEY_ALGORITHM") or "hmac-sha256"
        self.dir = tempfile.mkdtemp(prefix="nsupdate-dns-")  # 0700
        self.keyfile = os.path.join(self.dir, "tsig.key")
        fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                'key "%s" {\n  algorithm %s;\n  secret "%s";\n};\n'
                % (config["NSUPDATE_KEY_NAME"], algorithm, secrets["NSUPDATE_KEY_SECRET"])
            )

    def shutdown(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _run(self, argv, stdin=None):
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            raise Unavailable("%s: no answer from %s within %ds" % (argv[0], self.host, TIMEOUT * 2))
        return p.returncode, p.stdout, p.stderr

    def _dig(self, *args):
        return self._run(
            ["dig", "-k", self.keyfile, "-p", str(self.port), "@" + self.host, "+tcp",
             "+time=%d" % TIMEOUT, "+tries=1", "+noall", "+answer", "+comments"] + list(args)
        )

    @staticmethod
    def _failure(text):
        for word, cls in (("NOTAUTH", ConfigError), ("REFUSED", AuthError), ("BADKEY", AuthError),
                          ("BADSIG", AuthError), ("BADTIME", AuthError), ("NXRRSET", ZoneChanged),
                          ("YXRRSET", ZoneChanged)):
            if word in text:
                return cls
        return None

    def list(self, names):
        code, out, err = self._dig(self.zone, "AXFR")
        text = out + err
        if code != 0 or "Transfer failed" in text or "communications error" in text:
            cls = self._failure(text) or Unavailable
            raise cls("AXFR of %s from %s failed: %s" % (self.zone, self.host, text.strip()[-300:]))
        records, soa = [], None
        for line in out.splitlines():
            if not line.strip() or line.startswith(";"):
                continue
            parts = line.split(None, 4)
            if len(parts) < 5 or parts[2] != "IN":
                continue
            name, ttl, _, rtype, rdata = parts
            name = name.rstrip(".").lower()
            if rtype == "SOA":
                soa = rdata
                continue
            value = txt_value(rdata) if rtype == "TXT" else rdata.rstrip(".") if rtype == "CNAME" else rdata
            records.append({"name": name, "type": rtype, "value": value, "ttl": int(ttl)})
        if soa is None:
            raise Unavailable("the AXFR of %s from %s had no SOA" % (self.zone, self.host))
        self.soa = soa
        return records

    def apply(self, changes):
        if not changes:
            return
        lines = ["server %s %d" % (self.host, self.port), "zone %s." % self.zone]
        if self.soa:
            # Only if the zone is as dns.list read it: one message, all or nothing.
            lines.append("prereq yxrrset %s. SOA %s" % (self.zone, self.soa))

        def rr(r):
            value = txt_rdata(r["value"]) if r["type"] == "TXT" else r["value"]
            return "%s. %d IN %s %s" % (r["name"], r["ttl"], r["type"], value)

        def rr_del(r):
            value = txt_rdata(r["value"]) if r["type"] == "TXT" else r["value"]
            return "%s. IN %s %s" % (r["name"], r["type"], value)

        for c in changes:
            if c["op"] == "create":
                lines.append("update add " + rr(c["record"]))
            elif c["op"] == "delete":
                lines.append("update delete " + rr_del(c["record"]))
            elif c["op"] == "update":
                lines.append("update delete " + rr_del(c["from"]))
                lines.append("update add " + rr(c["to"]))
            else:
                raise ExtensionError("unknown change %r" % c["op"])
        lines += ["send", ""]
        code, out, err = self._run(["nsupdate", "-v", "-t", str(TIMEOUT), "-k", self.keyfile], "\n".join(lines))
        if code != 0:
            text = (out + err).strip()
            cls = self._failure(text)
            if cls is None:
                # No answer we understood: it may or may not have been applied.
                cls = Unavailable if ("timed out" in text or "communications error" in text
                                      or "could not" in text) else ExtensionError
            raise cls("nsupdate to %s failed: %s" % (self.host, text[-300:]))
        log("applied %d change(s) to %s" % (len(changes), self.zone))

    def health(self):
        code, out, err = self._dig(self.zone, "SOA")
        if code == 0 and "status: NOERROR" in out:
            return {"status": "ok", "detail": "%s answers for %s" % (self.host, self.zone)}
        return {"status": "failing", "detail": (out + err).strip()[-300:]}


if __name__ == "__main__":
    Extension(
        "nsupdate-dns",
        "1.0.0",
        description="RFC 2136 updates with nsupdate, AXFR with dig (TSIG)",
        env=["PATH"],
    ).dns(NsupdateDns()).run()
