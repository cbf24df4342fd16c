"""Every workflow the worker runs."""

from workflows.deletion import GatewayDeletion
from workflows.drift import DriftCheck
from workflows.gateway import GatewayWorkflow
from workflows.reaper import OrphanReaper
from workflows.runtime_domain import RuntimeDomainWorkflow

ALL_WORKFLOWS = (GatewayWorkflow, GatewayDeletion, RuntimeDomainWorkflow, DriftCheck, OrphanReaper)
