"""Region -> cluster: a gateway's `region` picks a kubeconfig context.

The context `in-cluster` is the worker's own cluster, reached with its pod's ServiceAccount
(no kubeconfig needed); other contexts come from the kubeconfig file.
"""

import os
import threading
from pathlib import Path

from kubernetes import config

from gatewayflow.cluster.client import IN_CLUSTER, Cluster
from gatewayflow.cluster.errors import PermanentClusterError, classify


class Regions:
    """One `Cluster` per region, created on first use and shared by every thread.

    `contexts` maps region -> kubeconfig context; when it is empty a region's context is
    the context of the same name.
    """

    def __init__(
        self,
        kubeconfig: Path,
        contexts: dict[str, str] | None = None,
        *,
        installation: str,
        pool_size: int = 32,
    ):
        self.kubeconfig = kubeconfig
        self.installation = installation
        self._contexts = dict(contexts or {})
        self._pool_size = pool_size  # one connection per concurrent activity
        self._clusters: dict[str, Cluster] = {}
        self._lock = threading.Lock()

    def cluster(self, region: str) -> Cluster:
        with self._lock:
            cluster = self._clusters.get(region)
            if cluster is None:
                cluster = Cluster(
                    self.kubeconfig,
                    self._context(region),
                    installation=self.installation,
                    pool_size=self._pool_size,
                )
                self._clusters[region] = cluster
            return cluster

    def close(self) -> None:
        with self._lock:
            for cluster in self._clusters.values():
                cluster.close()
            self._clusters.clear()

    def _context(self, region: str) -> str:
        """The region's context, checked against the kubeconfig as it is now (the file
        may be written after this process starts)."""
        known = self.known_contexts()
        if self._contexts:
            context = self._contexts.get(region)
            if context is None:
                raise PermanentClusterError(
                    f"unknown region {region!r}: configured regions are "
                    f"{', '.join(sorted(self._contexts))}"
                )
        else:
            context = region
        if context == IN_CLUSTER and context not in known:
            if "KUBERNETES_SERVICE_HOST" not in os.environ:
                raise PermanentClusterError(
                    f"region {region!r} uses context {IN_CLUSTER!r}, the pod's own cluster, "
                    "but this process does not run in a Kubernetes pod"
                )
            return context
        if context not in known:
            raise PermanentClusterError(
                f"region {region!r} needs context {context!r}, which {self.kubeconfig} does "
                f"not have; its contexts are {', '.join(known) or 'none'}"
            )
        return context

    def known_contexts(self) -> list[str]:
        if not self.kubeconfig.exists() and "KUBERNETES_SERVICE_HOST" in os.environ:
            return []  # in a pod without a kubeconfig: only `in-cluster`
        try:
            contexts, _ = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig)
            )
        except Exception as exc:
            raise classify(exc, during=f"reading {self.kubeconfig}") from exc
        return sorted(context["name"] for context in contexts)
