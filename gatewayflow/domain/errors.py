"""The project's errors."""


class GatewayflowError(Exception):
    """An expected failure whose message tells the user what to do."""


class Unreachable(GatewayflowError):
    """A server a command needs did not answer: says which, where, and what to run."""

    def __init__(self, part: str, address: str, remedy: str) -> None:
        super().__init__(f"cannot reach {part} at {address}: {remedy}")
        self.part = part
        self.address = address
        self.remedy = remedy
