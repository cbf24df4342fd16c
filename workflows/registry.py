"""Every workflow the worker runs."""

from workflows.deletion import GatewayDeletion
from workflows.gateway import GatewayWorkflow
from workflows.runtime_domain import RuntimeDomainWorkflow

ALL_WORKFLOWS = (GatewayWorkflow, GatewayDeletion, RuntimeDomainWorkflow)
