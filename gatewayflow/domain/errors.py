"""The project's errors."""


class GatewayflowError(Exception):
    """An expected failure whose message tells the user what to do."""
