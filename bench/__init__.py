"""`python -m bench`: gatewayflow against the original tick design and against Temporal's own bound.

One module per measurement (latency, throughput, scale, cost); `tick_baseline` is the
reference re-implementation of the original TaskService, clearly not gatewayflow.
"""
