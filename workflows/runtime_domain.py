"""RuntimeDomainWorkflow: converge one gateway's APISIX objects to a target state."""

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.domain import DomainActivities
    from gatewayflow.domain import naming
    from gatewayflow.domain.messages import DomainInput, DomainStatus, DomainStep
    from gatewayflow.domain.transitions import DomainAction, decide_domain
    from workflows import search
    from workflows.calls import call

_MAX_ROUNDS = 6  # Active -> Deleted takes at most three actions; more means a bug.


@workflow.defn(name="RuntimeDomainWorkflow")
class RuntimeDomainWorkflow:
    """The phase of the RuntimeDomain document says whether its routes exist."""

    @workflow.run
    async def run(self, input: DomainInput) -> DomainStatus:
        gid = input.gateway_id
        search.upsert(gid)
        ns = naming.namespace(gid)
        status = await call(
            DomainActivities.set_domain_target,
            input,
            summary=f"RuntimeDomain {gid}: state -> {input.target.value}",
        )
        for _ in range(_MAX_ROUNDS):
            action = decide_domain(status.state, status.phase)
            workflow.set_current_details(
                f"RuntimeDomain **{gid}** state {status.state.value}, phase "
                f"{status.phase.value}: next **{action.value}**"
            )
            if action is DomainAction.NONE:
                return status
            status = await call(
                DomainActivities.converge_domain,
                DomainStep(gateway_id=gid, region=input.region, action=action.value),
                summary=_SUMMARIES[action].format(ns=ns, gid=gid),
                waits=True,
            )
            if action is DomainAction.REMOVE_DOCUMENT:
                return status
        raise ApplicationError(
            f"RuntimeDomain {gid} did not converge to {input.target.value}", non_retryable=True
        )


_SUMMARIES: dict[DomainAction, str] = {
    DomainAction.APPLY_ROUTES: "apply ApisixRoute x3, ApisixPluginConfig, ApisixTls in {ns}",
    DomainAction.REMOVE_ROUTES: "remove domain ApisixRoutes in {ns} (keep TLS, Certificate)",
    DomainAction.DELETE_ALL: (
        "delete ApisixRoute, ApisixPluginConfig, ApisixTls, Certificate in {ns}"
    ),
    DomainAction.REMOVE_DOCUMENT: "remove RuntimeDomain document {gid}",
}
