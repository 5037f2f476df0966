"""tierline: customer value for Shopify merchants."""

import sys

# httpx imports its own command-line client (with rich, pygments and click, about 30 ms of every
# process start) whenever those are installed, as they are here for other packages' CLIs; it
# falls back to a stub when that import fails. tierline never runs httpx's CLI, so it declines
# that module before httpx is first imported (docs/benchmarks.md, worker start-up).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
