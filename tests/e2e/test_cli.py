"""The `noops` CLI against the whole platform (real placer, hostd, containers), run as a user runs
it: a subprocess, `python -m cli.main`, gateway and token from the environment.  Few and fast:
every deployment here starts real containers.  Errors and JSON output without a cluster:
tests/integration/gateway/test_gateway_cli.py."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from cli import errors
from tests.e2e.helpers import web_spec
from tests.support.noops_cli import REPO, Run, argv, env

pytestmark = pytest.mark.e2e


def noops(platform, *args: str, timeout: float = 180) -> Run:  # type: ignore[no-untyped-def]
    p = subprocess.run(argv(*args), cwd=REPO, env=env(platform.url, platform.cfg.admin_token()),
                       capture_output=True, text=True, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)


def delete(platform, app_id: str) -> None:  # type: ignore[no-untyped-def]
    r = noops(platform, "apps", "delete", app_id, "--wait", "--timeout", "90")
    assert r.code in (0, errors.NOT_FOUND), r


def spec_file(tmp_path: Path, spec: dict) -> str:
    f = tmp_path / f"{spec['id']}.yaml"
    f.write_text(json.dumps(spec))  # JSON is YAML: the .yaml path goes through the YAML reader
    return str(f)


def test_deploy_with_progress_then_scale_and_rollback(platform, tmp_path: Path, uid: str) -> None:
    app_id = f"cli-{uid}"
    try:
        r = noops(platform, "apps", "deploy", spec_file(tmp_path, web_spec(app_id, instances=2)), "--timeout", "120")
        assert r.code == 0, r
        assert f"{app_id} version 1 deployed: 2/2 in service" in r.out, r
        # Progress was shown as it went (one line per change when stderr is not a terminal).
        progress = [line for line in r.err.splitlines() if line.startswith(f"{app_id} v1 (")]
        assert progress and "2/2 new in service" in progress[-1], r.err
        insts = noops(platform, "instances", "ls", app_id, "-o", "json").json()
        assert sorted(i["state"] for i in insts) == ["RUNNING", "RUNNING"], insts

        r = noops(platform, "apps", "scale", app_id, "3", "--wait", "--timeout", "120")
        assert r.code == 0 and f"{app_id} version 2 deployed: 3/3 in service" in r.out, r
        r = noops(platform, "apps", "rollback", app_id, "1", "--wait", "--timeout", "120")
        assert r.code == 0 and f"{app_id} version 3 deployed: 2/2 in service" in r.out, r
        a = noops(platform, "apps", "show", app_id, "-o", "json").json()
        assert (a["version"], a["instances"], a["counts"]["RUNNING"]) == (3, 2, 2), a
        assert (a["deployment"]["to_version"], a["deployment"]["state"]) == (3, "succeeded"), a

        victim = noops(platform, "instances", "ls", app_id, "-o", "json").json()[0]["id"]
        r = noops(platform, "instances", "kill", victim, "--scale")
        assert r.code == 0 and f"{app_id}: killing {victim} (desired count lowered)" in r.out, r
        r = noops(platform, "apps", "wait", app_id, "--timeout", "60")
        assert r.code == 0 and f"{app_id} version 4 deployed: 1/1 in service" in r.out, r
        assert victim not in {i["id"] for i in noops(platform, "instances", "ls", app_id, "-o", "json").json()}

        hosts = {h["id"]: h for h in noops(platform, "hosts", "ls", "-o", "json").json()}
        assert {hosts[h]["state"] for h in platform.cfg.hosts} == {"UP"}
    finally:
        delete(platform, app_id)


def test_a_failing_deployment_exits_non_zero_with_its_reason(platform, tmp_path: Path, uid: str) -> None:
    app_id = f"cli-bad-{uid}"
    bad = web_spec(app_id, instances=1, image="noops/missing:latest", upgrade_strategy={"progress_deadline_s": 6})
    try:
        r = noops(platform, "apps", "deploy", spec_file(tmp_path, bad), "--detach", "-o", "json")
        assert r.code == 0 and isinstance(r.json()["deployment"], int), r
        r = noops(platform, "apps", "wait", app_id, "--timeout", "1")
        assert r.code == errors.TIMEOUT and "timed out after 1s" in r.err, r
        r = noops(platform, "apps", "wait", app_id, "--timeout", "60")
        assert r.code == errors.FAILED, r
        last = r.err.strip().splitlines()[-1]
        assert last.startswith("noops: deployment"), r.err
        assert "failed: no progress for 6s" in last and "noops/missing" in last, last
        # A reconciler round on demand, shown once it is recorded.
        before = (noops(platform, "drift", "-o", "json").json()["last"] or {}).get("id", 0)
        r = noops(platform, "drift", "--now", "--timeout", "30", "-o", "json")
        assert r.code == 0 and r.json()["last"]["id"] > before, r
    finally:
        delete(platform, app_id)


def test_events_tail_and_resume(platform, tmp_path: Path, uid: str) -> None:
    """Real frames from /v1/events: deployment events of an app with no instances (no containers),
    then `--since` replays what came after an id."""
    app_id = f"cli-ev-{uid}"
    tail = None
    try:
        r = noops(platform, "apps", "deploy", spec_file(tmp_path, web_spec(app_id, instances=0)), "--timeout", "60")
        assert r.code == 0 and f"{app_id} version 1 deployed: 0/0 in service" in r.out, r
        tail = subprocess.Popen(argv("events", "--app", app_id, "--type", "deployment", "--count", "1", "-o", "json"),
                                cwd=REPO, env=env(platform.url, platform.cfg.admin_token()), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with httpx.Client(base_url=platform.url, headers=platform.cfg.auth_headers(), timeout=10) as http:
            # The tail subscribes some time after it starts: make versions until it has printed one.
            for _ in range(100):
                assert http.patch(f"/v1/apps/{app_id}", json={"instances": 0}).status_code == 200
                try:
                    tail.wait(timeout=0.3)
                    break
                except subprocess.TimeoutExpired:
                    continue
            out, err = tail.communicate(timeout=10)
            assert tail.returncode == 0, err
            first = json.loads(out)
            assert (first["event"], first["app"]) == ("deployment", app_id), first
            assert isinstance(first["deployment"], int) and first["at"].endswith("Z") and first["event_id"], first
            assert http.patch(f"/v1/apps/{app_id}", json={"instances": 0}).status_code == 200
        r = noops(platform, "events", "--app", app_id, "--type", "deployment", "--since", first["event_id"],
                  "--count", "1", "-o", "json", timeout=30)
        assert r.code == 0, r
        after = json.loads(r.out)
        assert after["app"] == app_id and after["event_id"] != first["event_id"], (first, after)
        assert (after["deployment"], after["at"]) >= (first["deployment"], first["at"]), (first, after)
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()
            tail.wait()
        delete(platform, app_id)
