#!/usr/bin/env python3
"""A complete ``ssl`` extension: the platform certificate signed by a CA you already run as a
pair of files (``OPENSSL_CA_CERT_FILE``, ``OPENSSL_CA_KEY_FILE``), through the ``openssl`` CLI. A model
for a source that talks to a real CA's API (step-ca, Vault PKI, a corporate CA).

Install: link or copy this file as ``<data dir>/extensions/openssl-ca`` (next to it, or one
directory up, must be ``autogit_extension.py``), then::

    # .env
    EXTENSIONS_ENABLED=openssl-ca
    TLS_SOURCE=extension:openssl-ca
    OPENSSL_CA_CERT_FILE=/etc/autogit/ca.pem
    OPENSSL_CA_KEY_FILE=/etc/autogit/ca.key
    OPENSSL_CA_DAYS=90

``autogit tls renew`` (and the daemon, at two thirds of the lifetime) calls ``ssl.issue`` with
the names; a new P-256 key is made for each certificate, in a private temporary directory that
is removed afterwards.
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
    ConfigError,
    Extension,
    ExtensionError,
    Setting,
    SslProvider,
)


class OpensslCa(SslProvider):
    settings = [
        Setting("OPENSSL_CA_CERT_FILE", required=True, description="the CA's certificate (PEM)"),
        Setting("OPENSSL_CA_KEY_FILE", required=True, description="the CA's private key (PEM)"),
        Setting("OPENSSL_CA_DAYS", type="integer", description="days a certificate is valid (90)"),
    ]

    def initialize(self, config, secrets, context):
        self.ca_cert = config.get("OPENSSL_CA_CERT_FILE", "")
        self.ca_key = config.get("OPENSSL_CA_KEY_FILE", "")
        self.days = int(config.get("OPENSSL_CA_DAYS") or 90)
        for key, path in (("OPENSSL_CA_CERT_FILE", self.ca_cert), ("OPENSSL_CA_KEY_FILE", self.ca_key)):
            if not os.path.isfile(path):
                raise ConfigError("%s: %s is not a file" % (key, path))
        if shutil.which("openssl") is None:
            raise ConfigError("the openssl CLI is not on PATH")

    def issue(self, names):
        if not names:
            raise ExtensionError("ssl.issue without names")
        work = tempfile.mkdtemp(prefix="openssl-ca-")
        try:
            key, csr, crt, ext = (os.path.join(work, n) for n in ("key.pem", "csr.pem", "crt.pem", "ext.cnf"))
            with open(ext, "w") as f:
                f.write("subjectAltName=%s\n" % ",".join("DNS:" + n for n in names))
                f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
            cn = next((n for n in names if not n.startswith("*.")), names[0])
            self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                          "-nodes", "-keyout", key, "-subj", "/CN=" + cn, "-out", csr)
            self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                          "-set_serial", "0x" + os.urandom(16).hex(), "-days", str(self.days),
                          "-extfile", ext, "-out", crt)
            with open(crt) as c, open(self.ca_cert) as ca, open(key) as k:
                return {"chain": c.read() + ca.read(), "key": k.read()}
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _openssl(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise ExtensionError("openssl %s failed: %s" % (args[0], r.stderr.strip()[-300:]))


if __name__ == "__main__":
    Extension("openssl-ca", "1.0.0", "certificates from a CA kept as files, by the openssl CLI").ssl(OpensslCa()).run()
