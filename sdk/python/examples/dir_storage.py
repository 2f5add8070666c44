#!/usr/bin/env python3
"""A complete ``storage`` extension: backup archives copied into a directory, such as a
mounted NAS share or a USB disk (``DIR_STORAGE_PATH``, which must exist).

Install: link or copy this file as ``<data dir>/extensions/dir-storage`` (next to it, or one
directory up, must be ``autogit_extension.py``), then::

    # .env
    EXTENSIONS_ENABLED=dir-storage
    DIR_STORAGE_PATH=/mnt/nas/autogit

    # autogit.yml
    backup:
      targets:
        - {type: extension, name: dir-storage, keep: 14}

Each object is written to ``.<name>.part``, flushed to disk and renamed into place, so a copy
cut short never has the archive's name. autogit reads every copy back and compares its
SHA-256 before it counts, and checks it again before a restore.
"""

import os
import shutil
import sys

# autogit_extension.py: next to this file, or one directory up (sdk/python/examples/..).
_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_here, os.path.dirname(_here)]

from autogit_extension import (  # noqa: E402
    ConfigError,
    Extension,
    ExtensionError,
    NotFound,
    Setting,
    StorageProvider,
)


class DirStorage(StorageProvider):
    settings = [
        Setting("DIR_STORAGE_PATH", required=True, description="an existing directory"),
    ]

    def initialize(self, config, secrets, context):
        self.dir = config["DIR_STORAGE_PATH"]
        if not os.path.isdir(self.dir):
            raise ConfigError("DIR_STORAGE_PATH %s is not a directory" % self.dir)

    def _path(self, name):
        if not name or "/" in name or name.startswith("."):
            raise ExtensionError("refusing the object name %r" % name)
        return os.path.join(self.dir, name)

    def put(self, name, path):
        dest = self._path(name)
        part = os.path.join(self.dir, "." + name + ".part")
        with open(path, "rb") as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest)

    def get(self, name, path):
        src = self._path(name)
        if not os.path.isfile(src):
            raise NotFound(name)
        shutil.copyfile(src, path)

    def list(self):
        return [
            {"name": e.name, "size": e.stat().st_size}
            for e in os.scandir(self.dir)
            if e.is_file() and not e.name.startswith(".")
        ]

    def delete(self, name):
        try:
            os.remove(self._path(name))
        except FileNotFoundError:
            pass

    def health(self):
        ok = os.access(self.dir, os.W_OK)
        return {"status": "ok" if ok else "error", "detail": "" if ok else "%s is not writable" % self.dir}


if __name__ == "__main__":
    Extension("dir-storage", "1.0.0", "backup archives into a directory").storage(DirStorage()).run()
