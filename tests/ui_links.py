"""Opens a printed Temporal UI link the way the UI does: the page, then the API behind it.

The UI (`temporal server start-dev`, UI 2.x) routes a run as
`/namespaces/<ns>/workflows/<workflow id>/<run id>/history`, decodes each segment, and
asks its server `GET /api/v1/namespaces/<ns>/workflows/<id>?execution.runId=<run>` (the id
encoded twice, as the UI does); a workflow list reads `?query=` and asks
`GET /api/v1/namespaces/<ns>/workflows?query=...`.
"""

import json
import re
import urllib.request
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from gatewayflow.settings import Settings

LINK = re.compile(r"https?://\S+")


def printed_links(output: str) -> list[str]:
    return LINK.findall(output)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def opened(settings: Settings, link: str) -> list[tuple[str, str]]:
    """The (workflow id, run id) pairs the linked page shows; [] if it shows none."""
    assert settings.temporal_ui_url is not None
    url = urlsplit(link)
    assert f"{url.scheme}://{url.netloc}" == settings.temporal_ui_url.rstrip("/"), link
    page_status, _ = _get(link)
    assert page_status == 200, f"{link}: the page answers {page_status}"
    segments = url.path.split("/")[1:]
    api = f"{settings.temporal_ui_url.rstrip('/')}/api/v1/namespaces"
    match segments:
        case ["namespaces", ns, "workflows", workflow_id, run_id, "history"]:
            workflow_id, run_id = unquote(workflow_id), unquote(run_id)
            status, body = _get(
                f"{api}/{ns}/workflows/{quote(quote(workflow_id, safe=''), safe='')}"
                f"?execution.runId={quote(run_id, safe='')}"
            )
            if status != 200:
                return []
            execution = body["workflowExecutionInfo"]["execution"]
            return [(execution["workflowId"], execution["runId"])]
        case ["namespaces", ns, "workflows"]:
            [query] = parse_qs(url.query)["query"]
            status, body = _get(f"{api}/{ns}/workflows?query={quote(query, safe='')}")
            assert status == 200, f"{link}: the UI's list API answers {status}"
            return [
                (e["execution"]["workflowId"], e["execution"]["runId"])
                for e in body.get("executions", [])
            ]
    raise AssertionError(f"{link} is not a page of a run nor a workflow list")


def opens(settings: Settings, link: str, workflow_id: str) -> bool:
    """Whether the linked page shows a run of `workflow_id`."""
    return workflow_id in {wid for wid, _run in opened(settings, link)}
