"""State is the user's intent; Phase is how far the system has got."""

from enum import StrEnum


class GatewayState(StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"
    RESTARTING = "Restarting"
    DELETED = "Deleted"


class GatewayPhase(StrEnum):
    CREATING = "Creating"
    CREATED = "Created"
    STARTING = "Starting"
    STARTED = "Started"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DELETING = "Deleting"
    DELETED = "Deleted"


class DomainState(StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    DELETED = "Deleted"


class DomainPhase(StrEnum):
    CREATING = "Creating"
    CREATED = "Created"
    DELETING = "Deleting"
    DELETED = "Deleted"


class DatabaseState(StrEnum):
    ACTIVE = "Active"
    DELETED = "Deleted"


class DatabasePhase(StrEnum):
    CREATING = "Creating"
    CREATED = "Created"
    DELETING = "Deleting"
    DELETED = "Deleted"
