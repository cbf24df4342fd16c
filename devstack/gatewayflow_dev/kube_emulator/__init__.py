"""A Kubernetes API emulator: the real REST API, for the kinds gatewayflow uses.

No API server runs on a developer machine, so the embedded stack serves one emulated
cluster per region over HTTP; the official Python client and kubectl use it through the
generated kubeconfig. It behaves like a cluster where gatewayflow depends on it:
`Status` errors (404, 409, 422, 403), resourceVersion conflicts, label and field
selectors, watches, asynchronous deletion with `deletionTimestamp` and finalizers,
Namespaces that stay Terminating until empty, Deployments that become ready after a
delay, and state that survives a restart.

Command line:

    python -m gatewayflow_dev.kube_emulator --host 127.0.0.1 --port PORT --home DIR
        [--regions local,eu] [--delete-delay 0.3] [--ready-delay 1.0] [--faults FILE]
        [--admission-policy FILE] [--user NAME]

writes `DIR/kubeconfig` (context = region, current context = first region, server
`http://HOST:PORT/clusters/<region>`, authenticating as `--user`, by default
`kubernetes-admin`) and `DIR/admin.kubeconfig` (the same, as `kubernetes-admin`; see
`auth`), makes every create, update, patch and delete pass the ValidatingAdmissionPolicies
of `--admission-policy` (see `admission`), keeps each cluster in `DIR/kube/<region>.log` and
`<region>.json` (an append-only log and its compacted snapshot, see `journal`),
answers `GET /healthz` with "ok", and saves and exits on SIGTERM or SIGINT. `--port 0`
picks a free port; read it from the kubeconfig.

Admin API, at the root only; `?region=<name>` narrows the oplog and the request counts
to one region:

    GET|PUT|DELETE /_admin/faults   {"seed": 7, "rules": [...]}  (see `faults`)
    GET|PUT        /_admin/config   {"deleteDelay": 0.3, "readyDelay": 1.0}; PUT may send
                                    either key; readyDelay < 0 means never ready
    GET|PUT|DELETE /_admin/auth     {"tokens": ["<token>", ...]}: they replace the token
                                    of DIR/kubeconfig, which is answered 401 from then
                                    on (a rotated ServiceAccount token); none: it again
    GET|DELETE     /_admin/oplog    {"items": [{"seq", "time", "region", "verb", "kind",
                                    "namespace", "name", "labels"}, ...]}
    GET|DELETE     /_admin/requests {"items": [{"region", "verb", "kind", "count"}, ...]}:
                                    every API request received (get, list and watch too)

Faults and config apply to every region (a fault rule may name one `region`). Oplog verbs
are create, update, patch and delete for calls that changed something, and `removed` when
an object finally disappears. Every admin call answers with the state after it.

What kubectl needs beyond the plain REST API: server-side `meta.k8s.io/v1` Tables for
`kubectl get` (`tables`) and metadata-only lists (`as=PartialObjectMetadataList`),
protobuf request bodies from its typed clients, e.g. `kubectl create namespace`
(`protobuf`; Namespace, ConfigMap and Secret), a minimal OpenAPI v3 so `kubectl apply -f`
leaves validation to the server (`openapi`), and the Deployment `scale` subresource for
`kubectl scale`. Discovery is the plain (not aggregated) kind;
kubectl falls back to it.

Modules: `kinds` (kind registry, discovery), `store` (one cluster), `journal` (its
files), `server` (HTTP), `auth` (users and tokens), `admission` (policies),
`faults`, `oplog`, `selectors`, `patch`, `validation`, `tables`, `protobuf`, `openapi`,
`errors`, `kubeconfig`.
"""
