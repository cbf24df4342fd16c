# The gatewayflow worker: `python worker.py`, configured by environment variables
# (gatewayflow/settings.py). `pip install .`: no dev stack, no emulator inside.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install . \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp gatewayflow

# Numeric, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
# GATEWAYFLOW_METRICS_PORT, when set (compose and deploy/ use 9464).
EXPOSE 9464
CMD ["python", "worker.py"]
