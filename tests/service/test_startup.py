"""What a ``tierline`` process imports before it does anything (docs/benchmarks.md, start-up)."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_does_not_import_httpx_s_own_cli() -> None:
    code = (
        "import sys, service.cli, service.http, httpx\n"
        "print(' '.join(sorted(m for m in ('rich', 'pygments', 'httpx._main') if sys.modules.get(m))))\n"
        "print(httpx.AsyncClient.__name__)\n"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)

    loaded, client = done.stdout.splitlines()
    assert loaded == ""
    assert client == "AsyncClient"


def test_a_process_collects_garbage_ten_times_less_often_and_freezes_its_start_up() -> None:
    code = (
        "import gc, service\n"
        "early = gc.get_threshold()[0]\n"
        "from service.cli import tune_gc\n"
        "before = gc.get_freeze_count()\n"
        "tune_gc()\n"
        "print(early, gc.get_threshold()[0], before, gc.get_freeze_count() > 10_000)\n"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.split() == ["7000", "7000", "0", "True"]
