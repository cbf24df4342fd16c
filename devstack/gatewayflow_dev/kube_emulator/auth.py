"""Who is asking: the bearer tokens of the emulator's two kubeconfigs and their users.

Admission policies are written for a user (deploy/worker.yaml's applies to the worker's
ServiceAccount only), so the emulator tells its clients apart as an API server does, by
their bearer token:

- HOME/kubeconfig: the user given by `--user` (the embedded stack gives the worker's
  ServiceAccount, `system:serviceaccount:<namespace>:<name>`, with its groups);
- HOME/admin.kubeconfig: `kubernetes-admin` (group `system:masters`), an operator, or a
  test putting its own objects into a cluster.

The tokens are random, made once per home (HOME/kube/tokens.json) so that a restarted
emulator accepts the kubeconfigs it wrote before. A request without a token is
`system:anonymous`, as far as admission is concerned (the emulator has no RBAC); a token
it does not know is answered 401. `PUT /_admin/auth` replaces the first kubeconfig's token
with the given ones, as a ServiceAccount token is rotated.
"""

import json
import os
import secrets
import threading
from pathlib import Path

from gatewayflow_dev.kube_emulator.admission import User
from gatewayflow_dev.kube_emulator.errors import ApiError

ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def user_named(name: str) -> User:
    """A user with the groups the API server gives it (a ServiceAccount's: its namespace's)."""
    if name == ADMIN.name:
        return ADMIN
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace = name.removeprefix(SERVICE_ACCOUNT_PREFIX).split(":")[0]
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        return User(name, (*groups, "system:authenticated"))
    return User(name, ("system:authenticated",))


class Tokens:
    """The user token (HOME/kubeconfig) and the admin token (HOME/admin.kubeconfig)."""

    def __init__(self, path: Path, user: User) -> None:
        self.user = user
        saved = _load_or_create(path)
        self.user_token = saved["user"]
        self.admin_token = saved["admin"]
        self._lock = threading.Lock()
        self._rotated: frozenset[str] = frozenset()

    @property
    def rotated(self) -> frozenset[str]:
        with self._lock:
            return self._rotated

    def rotate(self, tokens: list[str]) -> None:
        """From now on the user's token is one of these; none: the kubeconfig's again."""
        with self._lock:
            self._rotated = frozenset(tokens)

    def authenticate(self, authorization: str) -> User:
        """The user of an Authorization header; 401 for a token nobody was given."""
        if not authorization:
            return ANONYMOUS
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        if token and secrets.compare_digest(token, self.admin_token):
            return ADMIN
        rotated = self.rotated
        if token and (token in rotated if rotated else token == self.user_token):
            return self.user
        raise ApiError(401, "Unauthorized", "Unauthorized")


def _load_or_create(path: Path) -> dict[str, str]:
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved.get("user"), str) and isinstance(saved.get("admin"), str):
            return {"user": saved["user"], "admin": saved["admin"]}
    except (OSError, ValueError, AttributeError):
        pass
    made = {"user": secrets.token_urlsafe(24), "admin": secrets.token_urlsafe(24)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(made) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return made
