"""The operation log: every successful mutating call, and every final removal, in order;
and the count of every API request by region, verb and kind (reads and watches too).

Tests read it (`GET /_admin/oplog`) to check the order in which the system touched the
cluster, e.g. that a Deployment was gone before the database step ran. One log serves all
regions so `seq` orders calls across clusters too.
"""

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any


class OpLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._seq = 0

    def record(
        self,
        region: str,
        verb: str,
        kind: str,
        namespace: str | None,
        name: str,
        labels: dict[str, str],
    ) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append(
                {
                    "seq": self._seq,
                    "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "region": region,
                    "verb": verb,
                    "kind": kind,
                    "namespace": namespace,
                    "name": name,
                    "labels": dict(labels),
                }
            )

    def entries(self, region: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._entries if region in (None, e["region"])]

    def clear(self, region: str | None = None) -> None:
        with self._lock:
            self._entries = [e for e in self._entries if region not in (None, e["region"])]


class RequestCounts:
    """API requests received, by (region, verb, kind), whatever their answer: what a client
    costs the API server (the bench reads it per deletion)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def count(self, region: str, verb: str, kind: str) -> None:
        with self._lock:
            self._counts[(region, verb, kind)] += 1

    def entries(self, region: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"region": r, "verb": verb, "kind": kind, "count": n}
                for (r, verb, kind), n in sorted(self._counts.items())
                if region in (None, r)
            ]

    def clear(self, region: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._counts if region in (None, k[0])]:
                del self._counts[key]
