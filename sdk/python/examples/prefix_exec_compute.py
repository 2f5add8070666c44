#!/usr/bin/env python3
"""A complete ``compute`` extension: runner hosts reached by a command prefix instead of SSH.

autogit runs every command on a runner host as an argument vector (the inventory probe, the
container engine, the lease watchdog). This extension runs each one as ``PREFIX + argv`` on
this machine, with ``{host}`` in the prefix replaced by the host's name, for example:

- a WSL2 distribution from its Windows host: ``wsl.exe -d {host} --``;
- a network namespace: ``ip netns exec {host}``;
- another user's engine (rootless Docker): ``sudo -u gpu -H --``;
- this machine itself: an empty prefix (``env`` with settings: ``env HOME=/srv/jobs``).

Install: link or copy this file as ``<data dir>/extensions/prefix-exec`` (next to it, or one
directory up, must be ``autogit_extension.py``), then::

    # .env
    EXTENSIONS_ENABLED=prefix-exec
    PREFIX_EXEC_COMMAND=wsl.exe -d {host} --
    PREFIX_EXEC_HOSTS=Ubuntu-22.04

    # autogit.yml
    runners:
      gpu:
        - name: wsl-gpu
          host: extension:prefix-exec/Ubuntu-22.04
          capabilities: [training, inference]

A host not in ``PREFIX_EXEC_HOSTS`` is refused (``NotFound``), so a typo in ``autogit.yml``
runs nothing. A command that runs longer than ``PREFIX_EXEC_TIMEOUT`` seconds is killed with
everything it started, and the answer is ``Unavailable``.
"""

import os
import shlex
import signal
import subprocess
import sys

# autogit_extension.py: next to this file, or one directory up (sdk/python/examples/..).
_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_here, os.path.dirname(_here)]

from autogit_extension import (  # noqa: E402
    ComputeProvider,
    ConfigError,
    Extension,
    NotFound,
    Setting,
    Unavailable,
)

# Output kept per stream: an answer must stay under the protocol's 4 MiB, escaping included.
MAX_OUTPUT = 1 << 19


class PrefixExec(ComputeProvider):
    settings = [
        Setting(
            "PREFIX_EXEC_COMMAND",
            description="the prefix, split like a shell would; {host} is the host's name",
        ),
        Setting(
            "PREFIX_EXEC_HOSTS",
            required=True,
            description="comma-separated host names it serves",
        ),
        Setting(
            "PREFIX_EXEC_TIMEOUT",
            type="integer",
            description="seconds one command may run (default 110)",
        ),
    ]

    def initialize(self, config, secrets, context):
        try:
            self.prefix = shlex.split(config.get("PREFIX_EXEC_COMMAND", ""))
        except ValueError as e:
            raise ConfigError("PREFIX_EXEC_COMMAND: %s" % e)
        self.hosts = {h.strip() for h in config["PREFIX_EXEC_HOSTS"].split(",") if h.strip()}
        if not self.hosts:
            raise ConfigError("PREFIX_EXEC_HOSTS names no host")
        self.timeout = int(config.get("PREFIX_EXEC_TIMEOUT", 110))
        if self.timeout < 1:
            raise ConfigError("PREFIX_EXEC_TIMEOUT must be at least 1")

    def exec(self, host, argv, stdin):
        if host not in self.hosts:
            raise NotFound("%s is not in PREFIX_EXEC_HOSTS" % host)
        if not argv:
            raise ConfigError("an empty command")
        cmd = [a.replace("{host}", host) for a in self.prefix] + argv
        try:
            p = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise Unavailable("cannot run %s: %s" % (cmd[0], e))
        try:
            out, err = p.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise Unavailable("%s did not finish within %d s" % (argv[0], self.timeout))
        return {
            # A signal's end is None, as over SSH.
            "code": p.returncode if p.returncode >= 0 else None,
            "stdout": out[:MAX_OUTPUT].decode("utf-8", "replace"),
            "stderr": err[:MAX_OUTPUT].decode("utf-8", "replace"),
        }


if __name__ == "__main__":
    Extension(
        "prefix-exec",
        "1.0.0",
        description="runner hosts reached by a command prefix (wsl.exe, ip netns exec, sudo)",
        env=["PATH", "HOME", "DOCKER_HOST", "XDG_RUNTIME_DIR"],
    ).compute(PrefixExec()).run()
