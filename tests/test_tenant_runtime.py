"""A tenant's runtime runs under Kubernetes' `restricted` Pod Security Standard: read back
from the cluster through the official client, as an operator would check it."""

import asyncio

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from gatewayflow.domain import naming
from gatewayflow.domain.states import GatewayState
from gatewayflow.settings import Settings
from tests.gateway_harness import harness, unique_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_runtime_pod_is_restricted_and_gets_no_token(stack: Settings) -> None:
    async with harness(stack) as h:
        gid = unique_id("restricted")
        await h.create(gid)
        await h.wait_for(gid, GatewayState.RUNNING)
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(stack.kubeconfig), context="local"
        )
        with api:
            ns = naming.namespace(gid)
            namespace = await asyncio.to_thread(k8s.CoreV1Api(api).read_namespace, ns)
            deployment = await asyncio.to_thread(
                k8s.AppsV1Api(api).read_namespaced_deployment, gid, ns
            )
            labels = api.sanitize_for_serialization(namespace)["metadata"]["labels"]
            pod = api.sanitize_for_serialization(deployment)["spec"]["template"]["spec"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
