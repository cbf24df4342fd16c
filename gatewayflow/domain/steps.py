"""The ordered steps of each operation, shared by workflows, plan and progress."""

from enum import StrEnum


class DeletionStep(StrEnum):
    TRIGGERS = "triggers"
    FUNCTIONS = "functions"
    STAGES = "stages-and-routes"
    RUNTIME_DOMAIN = "runtime-domain"
    INSTANCE = "instance"
    DATABASE = "database"
    NAMESPACE = "namespace"
    FINALIZE = "finalize"


DELETION_STEPS: tuple[DeletionStep, ...] = tuple(DeletionStep)

DELETION_STEP_TITLES: dict[DeletionStep, str] = {
    DeletionStep.TRIGGERS: "CronJobs, then CronTrigger documents",
    DeletionStep.FUNCTIONS: "CloudFunction documents",
    DeletionStep.STAGES: "stage ApisixRoutes; Stage, Environment and ClientApp documents",
    DeletionStep.RUNTIME_DOMAIN: "child RuntimeDomain workflow to Deleted",
    DeletionStep.INSTANCE: "Deployment and Service, until gone",
    DeletionStep.DATABASE: "runtime database and user, Secret, Database document",
    DeletionStep.NAMESPACE: "ConfigMap and namespace, until gone",
    DeletionStep.FINALIZE: "phase Deleted, then the ApiGateway document",
}


class CreationStep(StrEnum):
    NAMESPACE = "namespace"
    DATABASE = "database"
    RUNTIME_DOMAIN = "runtime-domain"
    STAGES = "stages"
    FUNCTIONS = "functions"
    TRIGGERS = "triggers"


class StartStep(StrEnum):
    """After the base is ensured (the creation steps, idempotently)."""

    TRIGGERS = "resume-triggers"
    INSTANCE = "instance"
    READY = "wait-ready"


class StopStep(StrEnum):
    RUNTIME_DOMAIN = "runtime-domain"
    TRIGGERS = "suspend-triggers"
    INSTANCE = "instance"
