"""A pytest plugin that declares one more tier before anything imports tierline.

Loaded with ``-p tests.support.fifth_tier`` by ``tests/service/domain/test_tier_levels.py``: it adds
``diamond`` above ``platinum`` the way a developer would, as one more line in
``service/domain/tier_levels.py``, and nothing else. ``tests/service/domain/fifth_tier_check.py`` then
proves that the rule, its SQL, validation, the suggestion, the API schema and the pages all
follow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import service.domain

DIAMOND = '    TierLevel("diamond", "Diamond", Decimal("90000.00"), 98, "#0b5563", "#e6fbff", "#127a8a"),\n'
ANCHOR = '    TierLevel("platinum",'


def _declare_fifth_tier() -> None:
    path = Path(service.domain.__file__).with_name("tier_levels.py")
    source = path.read_text(encoding="utf-8")
    line = next(line for line in source.splitlines(keepends=True) if line.startswith(ANCHOR))
    patched = source.replace(line, line + DIAMOND, 1)
    spec = importlib.util.spec_from_loader("service.domain.tier_levels", loader=None, origin=str(path))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.modules[spec.name] = module
    exec(compile(patched, str(path), "exec"), module.__dict__)  # noqa: S102 - the repository's own source
    service.domain.tier_levels = module  # type: ignore[attr-defined]


_declare_fifth_tier()
