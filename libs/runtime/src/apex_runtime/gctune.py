"""The cyclic garbage collector, set for a service process (``run_process``).

Python's defaults (a young collection every 700 new container objects, every object
ever made looked at again by each full collection) suit short scripts. A service builds
a few hundred thousand objects as it starts (modules, schemas, its composition root)
that live as long as the process, and then allocates briskly per event or per row: an
upload of 200,000 usage rows spent more than a quarter of the ingest process's CPU in
the collector. So a service collects young objects every ``YOUNG`` allocations, and once
it is ready (``ServiceHost.start``) moves what it built out of the collector's sight
(``gc.freeze``): a full collection then only looks at what the service made since.
Reference counting still frees every object that forms no cycle at once; the
threshold only delays the collection of cycles."""

from __future__ import annotations

import gc

YOUNG = 20_000
MIDDLE = 20  # young collections per middle-generation collection
OLD = 50  # middle collections per full collection (and only once a quarter of it is new)

_tuned = False


def tune() -> None:
    """Sets the thresholds; from then on ``settle`` freezes (a test process that never
    calls this keeps Python's defaults, and ``settle`` does nothing there)."""
    global _tuned
    gc.set_threshold(YOUNG, MIDDLE, OLD)
    _tuned = True


def settle() -> None:
    """Once the service is ready: collects what startup left as garbage, then freezes
    everything still alive (a no-op unless ``tune`` ran in this process)."""
    if _tuned:
        gc.collect()
        gc.freeze()
