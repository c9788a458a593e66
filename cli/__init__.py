"""The `noops` command-line tool: a thin client of the gateway's /v1 API (docs/cli.md).

    main.py      the app, global options, the one place errors become exit codes
    config.py    gateway URL and token: flag > environment > .noops/admin-token and the default URL
    client.py    HTTP (httpx): answers, error bodies, paging, the /v1/events stream
    output.py    tables for people, JSON for scripts
    <group>.py   one module per command group; follow.py watches a deployment to its end
"""
