"""The control plane: what stands on the workflows (the CLI's service, the dispatcher, the worker)."""
