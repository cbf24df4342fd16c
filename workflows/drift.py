"""DriftCheck: one round of the drift check, run by a Temporal Schedule.

Label-selected lists per kind and gateway namespace, in the region each gateway was placed
in, compared with what each converged gateway's phase implies; each drifted gateway's own
workflow gets a `repair` signal, so the repair is serialized with everything else that
gateway does.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.drift import DriftActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import DriftReport
    from workflows.calls import call
    from workflows.gateway import GatewayWorkflow


@workflow.defn(name="DriftCheck")
class DriftCheck:
    @workflow.run
    async def run(self, regions: list[str]) -> DriftReport:
        report = await call(
            DriftActivities.find_drift,
            regions,
            summary="list owned objects (one list per kind and region), compare with each "
            "Started or Stopped gateway",
            waits=True,
        )
        for finding in report.drifted:
            wid = finding.workflow_id or naming.unscoped_gateway_workflow_id(finding.gateway_id)
            try:
                await workflow.get_external_workflow_handle(wid).signal(
                    GatewayWorkflow.repair, finding
                )
                report.signalled.append(finding.gateway_id)
            except Exception:  # its workflow is not running: the sweep restarts it
                workflow.logger.warning("could not signal %s to repair drift", wid)
        drifted = ", ".join(f.gateway_id for f in report.drifted) or "none"
        later = f"; {report.deferred} more drifted, left to later rounds" if report.deferred else ""
        unchecked = (
            f"; **{report.unchecked} not checked**: {'; '.join(report.failures)}"
            if report.unchecked
            else ""
        )
        workflow.set_current_details(
            f"checked **{report.checked}** gateways in {', '.join(report.regions) or 'no region'}"
            f"; drifted: {drifted}{later}{unchecked}"
        )
        return report
