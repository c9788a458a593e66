"""Deleted apps give their load-balancer ports back after the retention; live and recently
deleted apps keep theirs (real task log)."""
from __future__ import annotations

from libs import db
from services.reconciler.rounds import release_lb_ports


async def test_ports_of_long_deleted_apps_are_released(pool, uid) -> None:
    apps = {f"live-{uid}": (False, "0"), f"recent-{uid}": (True, "0"), f"old-{uid}": (True, "2 days")}
    base = 31000 + int(uid, 16) % 1000 * 3  # this test's own ports; (bind_host, port) is unique
    try:
        for k, (app, (deleted, age)) in enumerate(apps.items()):
            await pool.execute(
                "INSERT INTO apps (id, version, spec, instances, deleted, updated_at) "
                "VALUES ($1, 1, '{}'::jsonb, 0, $2, now() - $3::text::interval)", app, deleted, age)
            await pool.execute("INSERT INTO lb_ports (app, port_name, bind_host, port) VALUES ($1, 'http', "
                               "'127.0.0.1', $2)", app, base + k)
        freed = await release_lb_ports(pool, db.Queries("reconciler"), 86400)
        assert f"old-{uid}/http:{base + 2}" in freed
        left = {r["app"] for r in await pool.fetch("SELECT app FROM lb_ports WHERE app = ANY($1)", list(apps))}
        assert left == {f"live-{uid}", f"recent-{uid}"}
    finally:
        await pool.execute("DELETE FROM lb_ports WHERE app = ANY($1)", list(apps))
        await pool.execute("DELETE FROM apps WHERE id = ANY($1)", list(apps))
