"""A tenant's runtime runs under Kubernetes' `restricted` Pod Security Standard, and only
images the operator allows: read back from the cluster through the official client, as
an operator would check it."""

import asyncio

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from gatewayflow.cluster.kinds import Kind, ObjectRef
from gatewayflow.domain import naming
from gatewayflow.domain.documents import ApiGateway, InstanceSpec
from gatewayflow.domain.images import allows
from gatewayflow.domain.states import GatewayPhase, GatewayState
from gatewayflow.domain.transitions import Request
from gatewayflow.settings import Settings
from tests.gateway_harness import Harness, harness, unique_id


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


async def test_a_runtime_image_not_allowed_is_refused_before_its_start(stack: Settings) -> None:
    """`instance.image` is the tenant's to write; GATEWAYFLOW_RUNTIME_IMAGES is the
    operator's. A start of another image is refused before it begins (nothing applied),
    with the reason in the document; an allowed image and a start request bring it up."""
    async with harness(stack) as h:
        gid = unique_id("image")
        instance = InstanceSpec(image="registry.evil.example/miner:1")
        await asyncio.to_thread(
            h.gateways.insert, ApiGateway(gateway_id=gid, instance=instance, triggers=0)
        )
        gw = await refused(h, gid)
        error = gw.progress.last_error or ""
        assert "registry.evil.example/miner:1" in error and "GATEWAYFLOW_RUNTIME_IMAGES" in error
        assert gw.phase is GatewayPhase.CREATED  # the start never began
        deployment = ObjectRef(Kind.DEPLOYMENT, naming.namespace(gid), naming.deployment(gid))
        cluster = h.deps.cluster("local")
        assert await asyncio.to_thread(cluster.get, deployment) is None

        raw = h.deps.db["ApiGateway"]
        image = "gatewayflow/runtime:1.1"
        await asyncio.to_thread(
            raw.update_one, {"gatewayId": gid}, {"$set": {"instance.image": image}}
        )
        await h.request(gid, Request.START)
        await h.wait_for(gid, GatewayState.RUNNING)
        live = await asyncio.to_thread(cluster.get, deployment)
        assert live is not None
        assert live["spec"]["template"]["spec"]["containers"][0]["image"] == image


async def refused(h: Harness, gid: str, timeout: float = 60.0) -> ApiGateway:
    """The gateway once its start was refused (progress.lastError says so)."""
    gw = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                gw = await asyncio.to_thread(h.gateways.get, gid)
                if gw and gw.progress.last_error and "not allowed" in gw.progress.last_error:
                    return gw
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"no refusal within {timeout:.0f}s: {gw}") from None


def test_which_images_an_entry_allows() -> None:
    assert allows("gatewayflow/runtime", "gatewayflow/runtime:1.0")
    assert allows("gatewayflow/runtime", "gatewayflow/runtime@sha256:0123")
    assert allows("gatewayflow/runtime", "gatewayflow/runtime")
    assert not allows("gatewayflow/runtime", "gatewayflow/runtime-miner:1.0")
    assert not allows("gatewayflow/runtime", "evil.example/gatewayflow/runtime:1.0")
    assert allows("registry.example.com/runtimes/", "registry.example.com/runtimes/node:20")
    assert not allows("registry.example.com/runtimes/", "registry.example.com/runtimes/")
    assert not allows("registry.example.com/runtimes/", "registry.example.com/other:1")
    assert not allows("", "anything:1")
    settings = Settings.model_construct(runtime_images=" a/b , c/ ,")
    assert settings.allowed_runtime_images == ["a/b", "c/"]
