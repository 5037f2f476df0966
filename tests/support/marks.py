"""Cases that run in every loop and cases for the full suite: ``make test-fast`` runs the first
case of a search (one seed, the small dataset), ``make test`` runs them all."""

from __future__ import annotations

from typing import Any

import pytest


def first_in_fast_runs(*cases: Any) -> list[Any]:
    """``cases`` for ``pytest.mark.parametrize``, every one after the first marked ``slow``."""
    first, *rest = cases
    return [first, *(pytest.param(case, marks=pytest.mark.slow) for case in rest)]
