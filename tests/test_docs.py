"""The documentation names only things that exist (issue 19): every metric (and label value), route,
CLI command and option, ``make`` target and setting named in ``README.md`` and ``docs/*.md``.

* **Metrics**: ``tierline_*`` names are looked up in the Prometheus collectors of
  ``service.metrics`` (counters as ``…_total``, histograms with their ``_bucket``/``_count``/``_sum``
  series). A label selector (``{outcome="dead"}``) must name a label of that metric and a value the
  code can give it: the string constants passed to ``.labels(...)`` in the code, or for labels fed
  from variables, the domain's own list (delivery statuses, tier-change reasons). Any other
  ``tierline_*`` word must appear in the code (a cookie or database name, for instance).
* **Routes**: paths under ``/api``, ``/app``, ``/auth``, ``/webhooks``, ``/health``, ``/ready``,
  ``/metrics`` and ``/schema`` (alone, after a method such as ``PUT``, or in a local URL) are
  resolved by the application's own router, with the method when one is given. The HTML 404
  catch-all of ``/app`` does not count as a route.
* **Commands**: ``tierline …`` in code (inline or in blocks, shell comments left out) must be a
  command of the typer application, and its ``--options`` options of that command; ``make …``
  a target of the Makefile.
* **Settings**: ``TIERLINE_*`` and ``SHOPIFY_*`` names must be fields of ``Settings`` (by their
  environment names) or, for the few that only tests and benchmarks read, appear in their code.

Each check is a function from text to a list of problems, so the planted mistakes at the end show
that it can fail.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from litestar import Litestar
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from prometheus_client.metrics import MetricWrapperBase

from service import metrics
from service.app import create_app
from service.cli import app as cli_app
from service.config import Settings
from service.domain.tiers import REASONS
from service.models import DeliveryStatus
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
#: Where a name that is not a metric or a setting may live (the application's and tools' code).
CODE = [
    *(REPO / d for d in ("service", "webhooks", "shopify_client", "bench")),
    REPO / "Makefile",
    REPO / ".ci",
]
#: Code that may read environment variables that are not settings (test and benchmark knobs).
KNOB_CODE = [REPO / "tests", REPO / "bench", REPO / "Makefile", REPO / ".ci"]
#: Labels whose values come from variables: the values the domain can give them.
VARIABLE_LABEL_VALUES = {
    ("tierline_webhook_deliveries_settled_total", "status"): {*DeliveryStatus.ALL, "retry"} - {"pending"},
    ("tierline_tier_changes_total", "reason"): set(REASONS),
}
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
ROUTE_PREFIX = r"/(?:api|app|auth|webhooks|health|ready|metrics|schema)(?![\w-])"
PATH_CHARS = r"[A-Za-z0-9_{}\-./:]*"


def _code_text(roots: list[Path]) -> str:
    parts = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if path == Path(__file__).resolve():
                continue  # this file plants wrong names on purpose
            if path.suffix in (".py", ".lua", ".toml", ".sh", "") or path.name in ("Makefile", "run"):
                try:
                    parts.append(path.read_text())
                except UnicodeDecodeError:
                    continue
    return "\n".join(parts)


@cache
def code_text() -> str:
    return _code_text(CODE)


@cache
def knob_text() -> str:
    return _code_text(KNOB_CODE)


def code_spans(text: str) -> Iterator[str]:
    """Fenced blocks (each line without its shell comment) and inline code spans."""
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
    for block in fenced.findall(text):
        for line in block.splitlines():
            yield re.sub(r"(^|\s)#.*$", "", line)
    yield from re.findall(r"`([^`\n]+)`", fenced.sub("", text))


# --- metrics ------------------------------------------------------------------------------------


@cache
def metric_registry() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every series name a scrape can show → (family name, label names)."""
    series: dict[str, tuple[str, tuple[str, ...]]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = tuple(value._labelnames)
        for family in value.describe():
            names = {
                "counter": [f"{family.name}_total"],
                "histogram": [family.name, *(f"{family.name}_{s}" for s in ("bucket", "count", "sum"))],
            }.get(family.type, [family.name])
            for name in names:
                series[name] = (family.name, labels)
    return series


@cache
def literal_label_values() -> dict[str, set[str]]:
    """Label → the string constants the code passes for it to ``.labels(...)`` (any metric)."""
    found: dict[str, set[str]] = {}
    for root in CODE[:3]:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "labels"):
                    continue
                for keyword in node.keywords:
                    values = [keyword.value]
                    if isinstance(keyword.value, ast.IfExp):
                        values = [keyword.value.body, keyword.value.orelse]
                    for value in values:
                        if isinstance(value, ast.Constant) and isinstance(value.value, str) and keyword.arg:
                            found.setdefault(keyword.arg, set()).add(value.value)
    return found


@cache
def label_sources() -> dict[tuple[str, str], bool]:
    """(series metric variable's family, label) → whether any call passes a non-constant for it."""
    variable: dict[tuple[str, str], bool] = {}
    names = {id(v): v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)}
    by_attr = {attr: v for attr, v in vars(metrics).items() if id(v) in names}
    for root in CODE[:3]:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "labels"):
                    continue
                owner = getattr(node.func, "value", None)
                metric = by_attr.get(getattr(owner, "id", ""))
                if metric is None:
                    continue
                family = metric.describe()[0].name
                for keyword in node.keywords:
                    constant = isinstance(keyword.value, ast.Constant) or (
                        isinstance(keyword.value, ast.IfExp)
                        and isinstance(keyword.value.body, ast.Constant)
                        and isinstance(keyword.value.orelse, ast.Constant)
                    )
                    key = (family, keyword.arg or "")
                    variable[key] = variable.get(key, False) or not constant
    return variable


def metric_problems(text: str) -> list[str]:
    problems = []
    registry = metric_registry()
    for name, selector in re.findall(r"\b(tierline_[a-z0-9_]+)(\{[^}]*\})?", text):
        if name not in registry:
            if selector or name not in code_text():
                problems.append(f"metric {name}: not a metric of service.metrics (nor a name in the code)")
            continue
        family, labels = registry[name]
        for label, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', selector):
            if label not in labels:
                problems.append(f"metric {name}: no label {label!r} (labels: {', '.join(labels) or 'none'})")
                continue
            series = name if name.endswith("_total") else f"{family}_total"
            allowed = VARIABLE_LABEL_VALUES.get((series, label))
            if allowed is None and not label_sources().get((family, label), False):
                allowed = literal_label_values().get(label, set())
            if allowed is not None and value not in allowed:
                problems.append(
                    f'metric {name}{{{label}="{value}"}}: a series that never exists '
                    f"({label} is one of {', '.join(sorted(allowed))})"
                )
    return problems


# --- routes -------------------------------------------------------------------------------------


@cache
def application() -> Litestar:
    return create_app(make_settings("sqlite+aiosqlite:///:memory:"), run_worker=False)


def route_problem(method: str | None, path: str) -> str | None:
    """None when the application answers ``path`` (with ``method``, when one is named)."""
    app = application()
    probe = re.sub(r"\{[^}/]*\}", "1", path)
    try:
        _, handler, *_ = app.asgi_router.handle_routing(probe, method or "GET")
    except MethodNotAllowedException:
        return None if method is None else f"route {method} {path}: the route does not answer {method}"
    except NotFoundException:
        # A prefix (`/api`, `/app/static/`) names the routes under it.
        stem = probe.rstrip("/")
        if method is None and any(route.path.startswith(stem + "/") for route in app.routes):
            return None
        return f"route {method or ''} {path}: no such route".replace("  ", " ")
    if getattr(handler, "name", None) == "ui-not-found":
        return f"route {path}: only the HTML 404 page answers there"
    return None


def route_problems(text: str) -> list[str]:
    found: set[tuple[str | None, str]] = set()
    pattern = rf"(?:\b({'|'.join(METHODS)}) )?(?<![\w./$-])({ROUTE_PREFIX}{PATH_CHARS})"
    for method, path in re.findall(pattern, text):
        found.add((method or None, path))
    local = rf"(?:https?://(?:127\.0\.0\.1|localhost)(?::\d+)?|\$BASE)({ROUTE_PREFIX}{PATH_CHARS})"
    for path in re.findall(local, text):
        found.add((None, path))
    problems = []
    for method, raw in sorted(found, key=lambda f: (f[1], f[0] or "")):
        path = raw.rstrip(".:,")
        problem = route_problem(method, path)
        if problem:
            problems.append(problem)
    return problems


# --- commands -----------------------------------------------------------------------------------


@cache
def cli_tree() -> dict[tuple[str, ...], set[str]]:
    """Command path → its option names (groups included, with --help)."""
    tree: dict[tuple[str, ...], set[str]] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        options = {"--help"}
        for param in command.params:
            options.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        tree[path] = options
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli_app), ())
    return tree


@cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:", (REPO / "Makefile").read_text(), re.M))


def command_problems(text: str) -> list[str]:
    problems = []
    tree = cli_tree()
    for span in code_spans(text):
        for match in re.finditer(r"(?:^|(?<=[\s/\"'(]))tierline((?:\s+[^\s|;&)`\"']+)*)", span):
            words = match.group(1).split()
            path: tuple[str, ...] = ()
            while words and (*path, words[0]) in tree:
                path = (*path, words.pop(0))
            groups = {p[: len(path)] for p in tree if len(p) > len(path)}
            if not path or (path in groups and words and re.fullmatch(r"[a-z][a-z-]*", words[0])):
                if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    problems.append(f"command tierline {' '.join((*path, words[0]))}: no such command")
                continue
            for word in words:
                option = word.strip("[]").split("=")[0]
                if option.startswith("--") and option not in tree[path]:
                    problems.append(f"command tierline {' '.join(path)}: no option {option}")
        for target in re.findall(r"(?:^|(?<=\s))make\s+([a-z][\w-]*)", span):
            if target not in make_targets():
                problems.append(f"make {target}: no such target in the Makefile")
    return problems


# --- settings -----------------------------------------------------------------------------------


@cache
def setting_names() -> set[str]:
    return {str(field.alias) for field in Settings.model_fields.values() if field.alias}


def setting_problems(text: str) -> list[str]:
    problems = []
    for name in sorted(set(re.findall(r"\b((?:TIERLINE|SHOPIFY)_[A-Z0-9_]+)\b", text))):
        if name not in setting_names() and not re.search(rf"\b{name}\b", knob_text()):
            problems.append(f"setting {name}: not a Settings field, nor read by the tests or benchmarks")
    return problems


def problems_in(text: str) -> list[str]:
    return metric_problems(text) + route_problems(text) + command_problems(text) + setting_problems(text)


# --- the documentation --------------------------------------------------------------------------


@pytest.mark.parametrize("document", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_everything_the_docs_name_exists(document: Path) -> None:
    assert problems_in(document.read_text()) == []


def test_the_docs_are_read() -> None:
    """The checks find what they look for in the real docs (they are not silently empty)."""
    text = "\n".join(d.read_text() for d in DOCS)
    assert len(re.findall(r"\btierline_[a-z_]+_total\b", text)) >= 3
    assert sum(1 for span in code_spans(text) if "tierline " in span) >= 10
    assert "GET /api/tiers/suggestion" in text


@pytest.mark.parametrize(
    ("planted", "problem"),
    [
        (
            '`tierline_webhook_deliveries_total{outcome="dead"}`',
            'tierline_webhook_deliveries_total{outcome="dead"}',
        ),
        ('`tierline_webhook_deliveries_settled_total{state="dead"}`', "no label 'state'"),
        ("`tierline_deliveries_dead_total`", "metric tierline_deliveries_dead_total"),
        ("`GET /api/tiers/suggestions`", "no such route"),
        ("`DELETE /api/settings`", "does not answer DELETE"),
        ("open http://127.0.0.1:8000/api/customer", "no such route"),
        ("`/app/reports`", "only the HTML 404 page"),
        ("```sh\ntierline frobnicate --now\n```", "tierline frobnicate"),
        ("`tierline serve --colour`", "no option --colour"),
        ("`tierline api-key rotate ID`", "tierline api-key rotate"),
        ("`make deploy`", "make deploy"),
        ("`TIERLINE_NO_SUCH_SETTING`", "setting TIERLINE_NO_SUCH_SETTING"),
    ],
)
def test_a_planted_wrong_name_is_reported(planted: str, problem: str) -> None:
    problems = problems_in(f"Some text.\n\n{planted}\n")
    assert len(problems) == 1, problems
    assert problem in problems[0]


@pytest.mark.parametrize(
    "fine",
    [
        '`tierline_webhook_deliveries_settled_total{status="dead"}`',
        '`tierline_webhook_deliveries_total{outcome="unavailable"}`',
        "`tierline_http_request_duration_seconds_bucket`",
        "`tierline_oauth_state`",
        "`GET /api/customers/{id}/addresses`",
        "`POST /api/deliveries/{id}/replay`",
        "<http://127.0.0.1:8010/app/settings>",
        "`/api`",
        "`/app/static/app.js`",
        "```sh\n.venv/bin/tierline simulate --customers 5 --seed 2   # tierline nonsense in a comment\n```",
        "`tierline api-key revoke ID`",
        "`tierline serve [--host --port]`",
        "`make bench-stats`",
        "`TIERLINE_DOCS_SCREENSHOTS=1`",
        "`SHOPIFY_API_SECRET_PREVIOUS`",
    ],
)
def test_real_names_pass(fine: str) -> None:
    assert problems_in(fine) == []


# --- code points only inside the repository --------------------------------------------------

#: Where code may point a reader: the repository's own files. A section sign or a specification
#: that is not in the repository leaves a newcomer with nowhere to go.
OUTSIDE_REFERENCE = re.compile(r"\bSPEC\s*§|§\s*\d|\bSTYLE rule\b|\.\./shared/SPEC")
DOC_REFERENCE = re.compile(r"\bdocs/([\w-]+\.md)")


def outside_references(text: str) -> list[str]:
    return [match.group(0) for match in OUTSIDE_REFERENCE.finditer(text)]


def test_code_cites_only_what_is_in_the_repository() -> None:
    found = {
        str(path.relative_to(REPO)): hits
        for root in ("service", "webhooks", "shopify_client", "bench", "tests")
        for path in sorted((REPO / root).rglob("*"))
        if path.suffix in {".py", ".html", ".js", ".css"}
        and path.name != "test_docs.py"
        and (hits := outside_references(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_every_docs_file_code_cites_exists() -> None:
    cited = {
        name
        for root in ("service", "webhooks", "shopify_client", "bench", "tests")
        for path in (REPO / root).rglob("*.py")
        for name in DOC_REFERENCE.findall(path.read_text(encoding="utf-8"))
    }
    assert cited
    assert sorted(name for name in cited if not (REPO / "docs" / name).is_file()) == []


@pytest.mark.parametrize("planted", ["(SPEC §4.3)", "see § 5", "STYLE rule 4", "../shared/SPEC.md"])
def test_a_planted_outside_reference_is_found(planted: str) -> None:
    assert outside_references(f'"""Rules ({planted})."""') != []
