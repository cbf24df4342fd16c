"""The worker process (`python worker.py`): a Temporal worker plus the dispatcher.

Configured by environment variables (gatewayflow/settings.py); the work is in
control/worker.py.
"""

import asyncio
import logging

from control.worker import run_worker, until_signalled
from gatewayflow.domain.errors import GatewayflowError
from gatewayflow.settings import SettingsError, load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:  # named in the message: stop before connecting anywhere
        raise SystemExit(f"gatewayflow worker: {exc}") from None
    try:
        asyncio.run(until_signalled(lambda stop: run_worker(settings, stop=stop)))
    except GatewayflowError as exc:  # e.g. its database is another installation's
        raise SystemExit(f"gatewayflow worker: {exc}") from None


if __name__ == "__main__":
    main()
