#!/usr/bin/env python3
"""A complete ``auth`` extension: a fixed list of users, each with a PBKDF2-SHA256 password
hash and a role, in the secret setting ``STATIC_USERS`` (or a file named by
``STATIC_USERS_FILE``). A login method for a handful of people without a directory.

Install: link or copy this file as ``<data dir>/extensions/static-users`` (next to it, or one
directory up, must be ``autogit_extension.py``), then::

    # .env
    EXTENSIONS_ENABLED=static-users
    STATIC_USERS_FILE=/etc/autogit/static-users

with one user per line (or comma-separated), ``name:hash:role``; make a hash with::

    python3 static_users_auth.py hash 'the password'

and sign in with ``"provider": "static-users"`` (or as ``alice@static-users``).
"""

import hashlib
import hmac
import os
import sys

# autogit_extension.py: next to this file, or one directory up (sdk/python/examples/..).
_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_here, os.path.dirname(_here)]

from autogit_extension import (  # noqa: E402
    AuthProvider,
    ConfigError,
    Extension,
    Setting,
)

ROLES = ("viewer", "operator", "admin")
ITERATIONS = 200_000


def make_hash(password, salt=None, iterations=ITERATIONS):
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``."""
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "pbkdf2_sha256$%d$%s$%s" % (iterations, salt.hex(), digest.hex())


def check_hash(password, stored):
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
        return hmac.compare_digest(got.hex(), digest)
    except ValueError:
        return False


# Verified for unknown names, so that they take as long as a wrong password.
_DUMMY = make_hash("not a password", salt=b"\0" * 16)


class StaticUsers(AuthProvider):
    settings = [
        Setting(
            "STATIC_USERS",
            secret=True,
            required=True,
            description="name:pbkdf2_sha256$...:role, one per line or comma-separated",
        )
    ]

    def initialize(self, config, secrets, context):
        self.users = {}
        text = secrets.get("STATIC_USERS", "")
        for n, item in enumerate(text.replace(",", "\n").splitlines(), 1):
            item = item.strip()
            if not item:
                continue
            parts = item.split(":")
            if len(parts) != 3 or parts[2] not in ROLES or not parts[0]:
                raise ConfigError(
                    "STATIC_USERS entry %d is not name:hash:role (role viewer, operator or admin)" % n
                )
            self.users[parts[0]] = (parts[1], parts[2])
        if not self.users:
            raise ConfigError("STATIC_USERS lists no user")

    def login(self, username, password):
        stored, role = self.users.get(username, (_DUMMY, None))
        if check_hash(password, stored) and role is not None:
            return {"name": username, "role": role}
        return None

    def health(self):
        return {"status": "ok", "detail": "%d users" % len(self.users)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["hash"] and len(sys.argv) == 3:
        print(make_hash(sys.argv[2]))
    else:
        Extension("static-users", "1.0.0", "users with PBKDF2 hashes from a setting").auth(
            StaticUsers()
        ).run()
