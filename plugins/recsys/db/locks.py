"""The advisory lock that keeps an erasure and the pipeline's writers apart.

An erasure takes it exclusively for its transaction; the writers that could bring an erased person back take
it shared for theirs: a load (it drops erased users' re-delivered rows, ``recsys.ingest.load``), the publish
(it sweeps the rows an in-flight run wrote after an erasure, ``recsys.serving.publish``) and the online push
(``recsys.serving.online``). So an erasure waits for those in flight, and they wait for it: each sees the
warehouse either before the erasure or after it, never half of it. Models and dbt builds in between take no
lock; whatever they wrote for an erased person is swept at publish.
"""

from __future__ import annotations

from typing import Any

ERASURE_LOCK = "recsys.quality.erasure"


def lock_for_erasure(cursor: Any) -> None:
    """Take the lock exclusively until the transaction ends: waits for the writers in flight."""
    cursor.execute("select pg_advisory_xact_lock(hashtext(%s))", (ERASURE_LOCK,))


def hold_off_erasure(cursor: Any) -> None:
    """Take the lock shared until the transaction ends: an erasure waits for it, it waits for an erasure."""
    cursor.execute("select pg_advisory_xact_lock_shared(hashtext(%s))", (ERASURE_LOCK,))
