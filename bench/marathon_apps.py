"""Time ``GET /v2/apps?embed=apps.tasks`` (what marathon-lb reads after every event and Traefik
polls) over a big task log: ``--apps`` apps (default 10,000) with ``--tasks`` RUNNING instances
each, health checks and load-balancer ports, through the real gateway app (ASGI, an admin token,
the same queries as in production).  Also times the task-log reads alone.  Its own database,
dropped after.  Marathon took > 10 s at 1k tasks (its issues #1274, #1278).

    .venv/bin/python -m bench.marathon_apps [--apps 10000] [--tasks 3] [--reps 5]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench import taskdb
from libs import db
from services.gateway import tokenstore
from services.gateway.marathon import reads, translate

DEFINITION = {"container": {"docker": {"image": "nginx:1.27"}, "portMappings": [{"containerPort": 80, "name": "http"}]},
              "cpus": 0.1, "mem": 32, "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example"},
              "env": {"A": "1"}, "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}]}
FILL = """
INSERT INTO apps (id, version, spec, instances, status)
SELECT 'bench-' || a, 1, jsonb_set($2::jsonb, '{id}', to_jsonb('bench-' || a)), $3, 'running'
  FROM generate_series(0, $1 - 1) AS a;
INSERT INTO app_versions (app, version, spec, restart_gen, created_by) SELECT id, 1, spec, 0, 'bench' FROM apps;
"""
INSTANCES = """
INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip, healthy)
SELECT 'bench-' || (k / $2::int) || '-' || lpad(to_hex(k), 12, '0'), 'bench-' || (k / $2::int), 1, 'h' || (k % 100), 1,
       0.1, 32, 'RUNNING', '198.18.' || (k / 250 % 250) || '.' || (k % 250 + 1), true
  FROM generate_series(0, $1::int * $2::int - 1) AS k;
INSERT INTO lb_ports (app, port_name, bind_host, port)
SELECT id, 'http', '127.0.0.1', 10000 + row_number() OVER (ORDER BY id) FROM apps;
"""


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms ({len(xs)} runs)"


async def run(args: argparse.Namespace) -> None:
    async with taskdb.throwaway("mar") as (name, pool):
        spec = translate.app_to_spec(DEFINITION, app_id="bench-x", base=None).model_copy(
            update={"instances": args.tasks})
        await pool.execute(FILL.split(";")[0], args.apps, spec.model_dump_json(), args.tasks)
        await pool.execute(FILL.split(";")[1])
        await pool.execute(INSTANCES.split(";")[0], args.apps, args.tasks)
        await pool.execute(INSTANCES.split(";")[1])
        for table in ("apps", "app_versions", "instances", "lb_ports"):
            await pool.execute(f"VACUUM ANALYZE {table}")
        q = db.Queries("gateway", "control", "deadletters", "access", "drift", "marathon")
        app, token = await taskdb.gateway(name, pool)
        print(f"task log: {args.apps} apps x {args.tasks} RUNNING tasks ({args.apps * args.tasks} tasks)")
        who = await tokenstore.lookup(pool, q, token)
        assert who is not None
        reads_s, http_s, size = [], [], 0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            for _ in range(args.reps):
                t = time.perf_counter()
                async with pool.acquire() as conn:
                    out = await reads.apps(conn, q, who, embed_tasks=True, embed_failure=False)
                reads_s.append(time.perf_counter() - t)
                assert len(out) == args.apps
                t = time.perf_counter()
                r = await http.get("/v2/apps", params={"embed": ["apps.tasks", "apps.deployments"]})
                http_s.append(time.perf_counter() - t)
                assert r.status_code == 200 and len(r.json()["apps"]) == args.apps
                size = len(r.content)
        print(f"task-log reads + shaping: {ms(reads_s)}")
        print(f"GET /v2/apps?embed=apps.tasks (whole request, {size / 1e6:.1f} MB of JSON): {ms(http_s)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, default=10000)
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
