"""`python -m gatewayflow_dev.kube_emulator`: run the emulator until SIGTERM or SIGINT."""

import argparse
import json
import re
import signal
import sys
import threading
from pathlib import Path

from gatewayflow_dev.kube_emulator.admission import Admission
from gatewayflow_dev.kube_emulator.auth import ADMIN, Tokens, user_named
from gatewayflow_dev.kube_emulator.faults import FaultInjector
from gatewayflow_dev.kube_emulator.kubeconfig import admin_kubeconfig, write_kubeconfig
from gatewayflow_dev.kube_emulator.server import EmulatorServer
from gatewayflow_dev.kube_emulator.store import Timing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gatewayflow_dev.kube_emulator",
        description="Kubernetes API emulator: one emulated cluster per region.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument(
        "--home",
        type=Path,
        required=True,
        help="writes HOME/kubeconfig, keeps state in HOME/kube/<region>.log and .json",
    )
    parser.add_argument(
        "--regions",
        default="local",
        help="comma-separated region names; the first is the current context",
    )
    parser.add_argument(
        "--delete-delay",
        type=float,
        default=0.3,
        help="seconds before a deleted object without finalizers is gone",
    )
    parser.add_argument(
        "--ready-delay",
        type=float,
        default=1.0,
        help="seconds before a Deployment is ready; negative: never",
    )
    parser.add_argument("--faults", type=Path, help="JSON fault configuration")
    parser.add_argument(
        "--admission-policy",
        type=Path,
        help="a YAML file whose ValidatingAdmissionPolicies and bindings every write must pass",
    )
    parser.add_argument(
        "--user",
        default=ADMIN.name,
        help="the user HOME/kubeconfig authenticates as (HOME/admin.kubeconfig: the admin)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    if not regions or not all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", r) for r in regions):
        sys.exit("--regions takes one or more DNS labels (e.g. local,eu), comma-separated")
    faults = FaultInjector()
    if args.faults:
        try:
            faults.configure(json.loads(args.faults.read_text()))
        except (OSError, ValueError) as exc:
            sys.exit(f"--faults {args.faults}: {exc}")
    admission = None
    if args.admission_policy:
        try:
            admission = Admission.load(args.admission_policy)
        except (OSError, ValueError, KeyError) as exc:
            sys.exit(f"--admission-policy {args.admission_policy}: {exc}")
    timing = Timing(delete_delay=args.delete_delay, ready_delay=args.ready_delay)
    tokens = Tokens(args.home / "kube" / "tokens.json", user_named(args.user))
    server = EmulatorServer(
        (args.host, args.port), args.home, regions, timing, faults, tokens, admission
    )
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    url = f"http://{host}:{server.port}"
    kubeconfig = args.home / "kubeconfig"
    write_kubeconfig(admin_kubeconfig(kubeconfig), url, regions, tokens.admin_token)
    write_kubeconfig(kubeconfig, url, regions, tokens.user_token)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start_ticker()
    serving = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    serving.start()
    print(f"kube emulator serving {', '.join(regions)} on {url}", flush=True)
    stop.wait()
    server.shutdown()
    server.close()


if __name__ == "__main__":
    main()
