"""The operation log: every successful mutating call, and every final removal, in order.

Tests read it (`GET /_admin/oplog`) to check the order in which the system touched the
cluster, e.g. that a Deployment was gone before the database step ran. One log serves all
regions so `seq` orders calls across clusters too.
"""

import threading
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
