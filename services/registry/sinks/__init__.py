"""Fan-out of the in-service set to the systems around noops: load balancer (HAProxy, IPVS),
whitelists (nftables).  Monitoring reads the task log directly (gateway /v1/discovery/prometheus).

Layers: ``model`` (what a sink is told), ``base`` (the Sink port), ``runner`` (one isolated task
per sink: queue, backoff, metrics), ``fanout`` (reads the task log, feeds every runner), and one
module per real adapter, each with a pure planning core.
"""
