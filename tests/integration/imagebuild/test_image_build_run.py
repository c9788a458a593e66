"""`noops image build` on the real engine, and its image run by a real hostd: a three-layer image
(base, a component bringing a crontab and a config file, an app overriding one key) built offline
twice to the same id; bad input builds nothing; inside hostd the override is applied, the cron
job runs, noops-init's stats reach hostd's /metrics and its usage answer (noops.usage.<host>), a stop takes under 2 s with noops-init as
PID 1, its readiness makes the health check pass, and a crashing app is reported with its exit
code."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import httpx
import msgspec
import pytest
import pytest_asyncio

from imagebuild.build import BuildResult, build_async
from imagebuild.errors import BuildError
from libs import imageref, messages, subjects
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    HostdUnderTest, docker, hostd, spec)
from tests.integration.hostd.test_hostd_stop_grace import stop_seconds
from tests.support.wait import eventually

# The app writes a counter and serves the base image's page; noops-init's stats are on 9100.
RUN_SH = """#!/bin/sh
echo "requests 7" > /run/noops/counters
exec httpd -f -p 8080 -h /www
"""
LAYERS = {
    "cron/config/etc/demo/app.conf": "greeting=hello\ncolor=blue\n",
    "cron/crontab": "@every 1s echo tick >> /tmp/cron.out\n",
    "app/config/etc/demo/app.conf": "color=red\n",
    "app/files/app/run.sh": RUN_SH,
}


def write_stack(root: Path, name: str, layers: dict[str, str] = LAYERS) -> Path:
    for rel, text in layers.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "app/files/app/run.sh").chmod(0o755)
    (root / "stack.yaml").write_text(f"name: {name}\nbase: noops/base:latest\ncomponents: [./cron]\n"
                                     "app:\n  path: ./app\n  command: [/app/run.sh]\n  ready: {ports: [8080]}\n")
    return root / "stack.yaml"


async def images_named(docker: aiodocker.Docker, name: str) -> list[dict]:
    return await docker.images.list(filters={"reference": [name]})


async def remove_images(docker: aiodocker.Docker, name: str) -> None:
    for img in await images_named(docker, name):
        for tag in img.get("RepoTags") or []:
            if tag.startswith(f"{name}:"):
                await docker.images.delete(tag, force=True)


@pytest_asyncio.fixture
async def image_name(docker: aiodocker.Docker, uid: str) -> AsyncIterator[str]:
    name = f"noopstest/img{uid}"
    try:
        yield name
    finally:
        await remove_images(docker, name)


@pytest_asyncio.fixture
async def built(tmp_path: Path, docker: aiodocker.Docker, image_name: str) -> BuildResult:
    return await build_async(write_stack(tmp_path, image_name), docker=docker)


async def test_same_inputs_give_the_same_image(tmp_path: Path, docker: aiodocker.Docker, image_name: str,
                                              built: BuildResult) -> None:
    again = await build_async(write_stack(tmp_path / "copy", image_name), docker=docker, explain=True)
    assert again.image_id == built.image_id and again.tags == built.tags
    assert again.tags == (f"{image_name}:latest", f"{image_name}:sha-{built.image_id[7:23]}")
    assert all(imageref.problem(tag) is None for tag in again.tags)   # an app spec's image may name either
    assert again.layers == ("app", "noops")   # the component brings no plain files: no layer of its own
    assert "/etc/demo/app.conf: color <- app (over cron)" in again.explain
    got = await docker.images.inspect(built.content_tag)
    assert got["Id"] == built.image_id
    assert got["Config"]["Labels"]["org.noops.init"] == "1"


async def test_bad_input_builds_nothing(tmp_path: Path, docker: aiodocker.Docker, image_name: str) -> None:
    bad = {**LAYERS, "app/config/etc/demo/app.conf": "color red\n"}
    with pytest.raises(BuildError) as err:
        await build_async(write_stack(tmp_path, image_name, bad), docker=docker)
    assert err.value.layer == "app" and err.value.file.endswith("config/etc/demo/app.conf")
    assert "line 1: expected key=value" in str(err.value)
    assert not await images_named(docker, image_name)


async def exec_out(container_id: str, *cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec("docker", "exec", container_id, *cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode()


async def metrics_of(hostd: HostdUnderTest) -> str:
    assert hostd.settings is not None
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(f"http://127.0.0.1:{hostd.settings.port}/metrics")).text


async def test_the_image_runs_under_hostd(hostd: HostdUnderTest, built: BuildResult) -> None:
    # The engine's init stays on (hostd's default) and is left out for this image: noops-init is PID 1.
    # A grace of 20 s: a stop that waited for it would fail below.
    await hostd.start(NOOPS_STOP_TIMEOUT_S="20", NOOPS_HOSTD_INIT_STATS_INTERVAL_S="0.3")
    # noops-init's readiness as the health check relies on it: HTTP /ready on its stats port.
    ready = messages.HealthCheckSpec(protocol="HTTP", name="http /ready", port=9100, path="/ready", grace_period_s=0,
                                     interval_s=0.3, timeout_s=2)
    await hostd.place("web-1", container=msgspec.structs.replace(spec(image=built.content_tag, cmd=[]),
                                                                 health_checks=[ready]))
    await hostd.report("web-1", "RUNNING")
    await eventually(lambda: next((r for r in hostd.reports if r.instance == "web-1" and r.healthy), None),
                     timeout=15, what="healthy by noops-init's /ready")
    [c] = await hostd.containers("web-1")
    assert (await exec_out(c.id, "cat", "/etc/demo/app.conf")) == "greeting=hello\ncolor=red\n"
    assert (await exec_out(c.id, "cat", "/proc/1/cmdline")).startswith("/noops/init")
    assert (await c.show())["HostConfig"].get("Init") is not True
    await eventually(lambda: exec_out(c.id, "grep", "-c", "tick", "/tmp/cron.out"), timeout=15,
                     what="the cron job's file")

    def exported(text: str) -> bool:
        return ('noops_instance_cpu_seconds_total{app="web",instance="web-1"}' in text
                and 'noops_instance_counter{app="web",instance="web-1",name="requests"} 7.0' in text
                and 'noops_instance_ready{app="web",instance="web-1"} 1.0' in text)
    await eventually(lambda: metrics_of(hostd), timeout=15, what="hostd /metrics answering")
    text = await eventually(lambda: _if(exported, metrics_of(hostd)), timeout=15, what="the instance's init stats")
    memory = next(line for line in text.splitlines() if line.startswith("noops_instance_memory_bytes{"))
    assert float(memory.split()[-1]) > 0

    async def usage_with_a_rate() -> messages.InstanceUsage | None:
        msg = await hostd.nc.request(subjects.usage(hostd.host), messages.encode(messages.UsageRequest()), timeout=2)
        found = [u for u in messages.decode(msg.data, messages.Usage).items if u.instance == "web-1"]
        return found[0] if found and found[0].cpu_cores is not None else None
    # The same stats on noops.usage.<host> (the cluster map's columns), with CPU cores once two rounds found it.
    usage = await eventually(usage_with_a_rate, timeout=15, what="web-1's usage with a CPU rate")
    assert usage.app == "web" and usage.ready and usage.memory_bytes > 0 and usage.cpu_cores >= 0

    took = await stop_seconds(hostd, "web-1")
    print(f"stop of a noops-init container through hostd: {took:.2f}s")
    assert took < 2, f"a noops-init container took {took:.2f}s to stop"
    await eventually(lambda: _if(lambda t: 'instance="web-1"' not in t, metrics_of(hostd)), timeout=10,
                     what="the stopped instance gone from /metrics")


async def _if(pred, text_aw):  # type: ignore[no-untyped-def]
    text = await text_aw
    return text if pred(text) else None


async def test_a_crashing_app_is_reported_with_its_exit_code(hostd: HostdUnderTest, built: BuildResult) -> None:
    await hostd.start()
    t0 = time.monotonic()
    await hostd.place("web-1", container=msgspec.structs.replace(
        spec(image=built.tags[0], cmd=["/bin/sh", "-c", "sleep 1; exit 3"])))
    failed = await hostd.report("web-1", "FAILED", timeout=20)
    assert failed.reason.startswith("exited with code 3 after "), failed.reason
    assert float(failed.reason.split()[-2]) < time.monotonic() - t0
