"""Small helpers shared by the e2e tests."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def web_spec(app_id: str, instances: int = 3, **over) -> dict:
    spec = json.loads((REPO / "examples" / "web.json").read_text())
    spec.update(id=app_id, instances=instances, **over)
    return spec


async def instances(client: httpx.AsyncClient, app_id: str) -> list[dict]:
    r = await client.get(f"/v1/apps/{app_id}/instances")
    r.raise_for_status()
    return r.json()


def containers(cluster: str, app_id: str, *, all_states: bool = True) -> list[str]:
    argv = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=noops.cluster={cluster}",
            "--filter", f"label=noops.app={app_id}"]
    if all_states:
        argv.insert(2, "-a")
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def running_count(insts: list[dict], n: int) -> bool:
    return len([i for i in insts if i["state"] == "RUNNING"]) == n
