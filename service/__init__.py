"""tierline: customer value for Shopify merchants."""

import gc
import sys

# Process start-up (docs/benchmarks.md, worker start-up). Loading tierline's code allocates
# hundreds of thousands of objects, and the young generation, collected every 700 allocations by
# default, set off hundreds of collections that find nothing: every 7,000 (service.cli.tune_gc,
# which also freezes what start-up built once the code is loaded) saves about 45 ms.
gc.set_threshold(7000, *gc.get_threshold()[1:])

# httpx imports its own command-line client (with rich, pygments and click, about 30 ms of every
# process start) whenever those are installed, as they are here for other packages' CLIs; it
# falls back to a stub when that import fails. tierline never runs httpx's CLI, so it declines
# that module before httpx is first imported.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
