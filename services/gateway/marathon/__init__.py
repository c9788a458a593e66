"""Marathon's /v2 API on the gateway (docs/marathon.md): pure translation (``ids``, ``translate``,
``shapes``) and thin routes that call the same store functions as /v1."""
