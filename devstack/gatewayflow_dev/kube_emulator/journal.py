"""Where one emulated cluster keeps its objects: a snapshot plus an append-only log.

Every write appends one JSON line to `<region>.log` (one `write` call on an unbuffered
file, so a killed process keeps every write it has answered); rewriting the whole state
on each write would make a write cost as much as the cluster is large. Once the log holds
more lines than the cluster has objects (and at least `COMPACT_MIN`), the state is written
to `<region>.json` (temp file + `os.replace`) and the log is emptied: compaction costs
O(objects) once per O(objects) writes, so O(1) per write.

A line carries the cluster's resourceVersion after the write, so lines already in the
snapshot (a kill between the snapshot and emptying the log) are skipped at load, and a
torn last line (a kill in the middle of a write) is dropped. Nothing is fsynced: the files
survive a killed process, not a machine crash.
"""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

COMPACT_MIN = 1000

Saved = dict[str, Any]  # {"object": ..., "deleteRequested": ..., "rolloutStarted": ...}


@dataclass
class Loaded:
    resource_version: int = 0
    saved: dict[tuple[str, str, str, str], Saved] = field(default_factory=dict)
    """By (apiVersion, kind, namespace, name), in creation order."""


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    metadata = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], metadata.get("namespace") or "", metadata["name"])


class Journal:
    def __init__(self, snapshot: Path) -> None:
        self.snapshot = snapshot
        self.log = snapshot.with_suffix(".log")
        self._file: BinaryIO | None = None
        self._lines = 0

    def load(self) -> Loaded:
        """The state the files hold: the snapshot, then every complete newer log line."""
        loaded = Loaded()
        if self.snapshot.exists():
            state = json.loads(self.snapshot.read_text())
            loaded.resource_version = state["resourceVersion"]
            for saved in state["objects"]:
                loaded.saved[identity(saved["object"])] = saved
        if self.log.exists():
            for number, line in enumerate(self.log.read_bytes().splitlines(), 1):
                try:
                    entry = json.loads(line)
                except ValueError:
                    print(f"{self.log}:{number}: torn line dropped", file=sys.stderr)
                    break
                if entry["rv"] <= loaded.resource_version:
                    continue
                loaded.resource_version = entry["rv"]
                if "removed" in entry:
                    loaded.saved.pop(identity(entry["removed"]), None)
                else:
                    loaded.saved[identity(entry["put"]["object"])] = entry["put"]
        return loaded

    def put(self, resource_version: int, saved: Saved) -> None:
        self._append({"rv": resource_version, "put": saved})

    def removed(self, resource_version: int, obj: dict[str, Any]) -> None:
        metadata = obj["metadata"]
        stub = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {"namespace": metadata.get("namespace"), "name": metadata["name"]},
        }
        self._append({"rv": resource_version, "removed": stub})

    def due(self, objects: int) -> bool:
        """Whether the log has grown enough to be folded into the snapshot."""
        return self._lines > max(COMPACT_MIN, objects)

    def compact(self, resource_version: int, saved: list[Saved]) -> None:
        """Write the whole state as the snapshot, then empty the log."""
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.snapshot.with_suffix(".json.tmp")
        temporary.write_text(json.dumps({"resourceVersion": resource_version, "objects": saved}))
        os.replace(temporary, self.snapshot)
        self._open().truncate(0)
        self._lines = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, entry: dict[str, Any]) -> None:
        self._open().write(json.dumps(entry).encode() + b"\n")
        self._lines += 1

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.log, "ab", buffering=0)  # noqa: SIM115 - kept open
        return self._file
