"""Every Temporal UI link the project prints, built in one place.

The UI routes a workflow as `/namespaces/<ns>/workflows/<id>/<run>/history`, each part
URL-encoded (a workflow id such as `gateway/shop` contains a `/`), and needs the run id:
without it the page does not load. When no run is known, the link is the workflow list
filtered by a visibility query instead, which the UI takes as `?query=`.
"""

from urllib.parse import quote, urlencode

from gatewayflow.settings import Settings


def _namespace_url(settings: Settings) -> str:
    base = (settings.temporal_ui_url or f"http://127.0.0.1:{settings.ui_port}").rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}"


def run_link(settings: Settings, workflow_id: str, run_id: str) -> str:
    """The page of one run of a workflow."""
    return (
        f"{_namespace_url(settings)}/workflows/"
        f"{quote(workflow_id, safe='')}/{quote(run_id, safe='')}/history"
    )


def query_link(settings: Settings, query: str) -> str:
    """The workflow list filtered by a visibility query, e.g. `GatewayId="shop"`."""
    return f"{_namespace_url(settings)}/workflows?{urlencode({'query': query})}"


def workflow_link(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    """The run's page when the run is known, else every run of that workflow id."""
    if run_id:
        return run_link(settings, workflow_id, run_id)
    return query_link(settings, f'WorkflowId="{workflow_id}"')


def gateway_link(settings: Settings, gateway_id: str) -> str:
    """Every workflow of one gateway: its own, its deletion and its runtime domain."""
    return query_link(settings, f'GatewayId="{gateway_id}"')
