"""A fifth tier declared in one line of ``service/domain/tier_levels.py`` reaches the rule, its
SQL, validation, the suggestion, the API schema and the pages: ``fifth_tier_check.py`` run in a
pytest process of its own with the ``tests.support.fifth_tier`` plugin, which adds the line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CHECK = "tests/service/domain/fifth_tier_check.py"


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, CHECK, "-q", "-n", "0"],
        cwd=ROOT,
        env={**os.environ, "TIERLINE_TEST_DATABASES": "sqlite"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_layer_follows_the_declaration() -> None:
    result = run_check("-p", "tests.support.fifth_tier")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout


def test_without_the_fifth_tier_the_check_fails() -> None:
    """The check can fail: with the four shipped tiers, it does."""
    result = run_check("-k", "five_tiers")

    assert result.returncode == 1, result.stdout[-3000:]
    assert f"FAILED {CHECK}::test_the_declaration_has_five_tiers" in result.stdout
