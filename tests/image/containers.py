"""Containers of the built image, run with buildah (``--isolation chroot``, vfs storage, as root).

Each :class:`Container` is a working container made from the image (its own copy of the file
system), like one Fly machine. Processes run in it with the image's user, working directory and
environment, plus what a test adds. Chroot isolation shares the host's network, so a process that
listens on a port is reached at 127.0.0.1, and the host's PostgreSQL answers at 127.0.0.1:5432.
There is no PID namespace: a signal meant for the container's main process is sent to that
process (found under the ``buildah run`` process), as a runtime would send it to PID 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BUILDAH = ["buildah", "--storage-driver", "vfs"]
#: Containers made by the tests: the prefix, then the test run's process id.
CONTAINER_PREFIX = "tierline-smoke-"
#: The executable every tierline process of the image runs.
TIERLINE_EXECUTABLE = "/opt/tierline/bin/tierline"


def buildah_available() -> str | None:
    """Why containers cannot run here, or None when they can."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (`make image` installs it)"
    if os.geteuid() != 0:
        return "buildah with the vfs driver and chroot isolation needs root"
    return None


def remove_abandoned_containers() -> list[str]:
    """Remove the containers of earlier test runs that ended without removing theirs (killed)."""
    listing = subprocess.run(
        [*BUILDAH, "containers", "--format", "{{.ContainerName}}"], capture_output=True, text=True
    )
    removed = []
    for name in listing.stdout.split():
        match = re.fullmatch(rf"{CONTAINER_PREFIX}(\d+)-.*", name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        subprocess.run([*BUILDAH, "rm", name], capture_output=True, timeout=300)
        removed.append(name)
    return removed


def inspect_image(image: str) -> dict[str, Any] | None:
    result = subprocess.run([*BUILDAH, "inspect", "--type", "image", image], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    inspected: dict[str, Any] = json.loads(result.stdout)
    return inspected


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return children


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for process {pid}")


class Process:
    """A process started in a container, its output collected in a file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def main_pid(self, timeout: float = 30) -> int:
        """The process running ``tierline`` (a descendant of ``buildah run``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [self.popen.pid]
            while pending:
                pid = pending.pop()
                cmdline = _cmdline(pid)
                # The interpreter running the script, not buildah's helper that started it.
                if len(cmdline) > 1 and cmdline[1] == TIERLINE_EXECUTABLE and "buildah" not in cmdline[0]:
                    return pid
                pending.extend(_children(pid))
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no tierline process under buildah run; output:\n{self.output()[-3000:]}")

    def terminate(self) -> None:
        """SIGTERM to the tierline process, as Fly sends it to the machine's main process."""
        os.kill(self.main_pid(), signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(AssertionError, ProcessLookupError):
                os.kill(self.main_pid(timeout=1), signal.SIGKILL)
            self.popen.kill()
            self.popen.wait(timeout=30)


class Container:
    """A working container of ``image``; :meth:`remove` deletes it."""

    def __init__(self, image: str, role: str, logs: Path) -> None:
        self.name = f"{CONTAINER_PREFIX}{os.getpid()}-{role}-{uuid.uuid4().hex[:8]}"
        self.logs = logs
        result = subprocess.run(
            [*BUILDAH, "from", "--pull=never", "--name", self.name, image],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"buildah from {image} failed: {result.stderr}"

    def _argv(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        argv = [*BUILDAH, "run", "--isolation", "chroot"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.name, "--", *command]

    def run(
        self, command: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion; stdout and stderr are the command's (buildah adds its own lines on
        a non-zero exit)."""
        return subprocess.run(
            self._argv(command, env or {}), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> Process:
        log = self.logs / f"{self.name}-{command[-1]}-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(self._argv(command, env or {}), stdout=out, stderr=subprocess.STDOUT)
        return Process(popen, log)

    def remove(self) -> None:
        subprocess.run([*BUILDAH, "rm", self.name], capture_output=True, timeout=300, check=False)
