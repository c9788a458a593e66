"""`build(stack)`: read and check every layer, merge, assemble the image, load it into the local
engine.  Every check runs before the engine is given anything, so a refused build leaves nothing."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import aiodocker

from imagebuild import engine, image, initbin, layers, plan, stack, tarlayer
from imagebuild.errors import BuildError

CONTENT_TAG_PREFIX = "sha-"


@dataclass(frozen=True)
class BuildResult:
    image_id: str                 # sha256:...: the same inputs give the same id
    tags: tuple[str, ...]         # "<name>:<tag>" and "<name>:sha-<16 hex of the id>"
    layers: tuple[str, ...]       # image layers on top of the base, lowest first
    explain: tuple[str, ...] = () # "<file>: <key> <- <layer> (over <lower layers>)", with explain=True

    @property
    def content_tag(self) -> str:
        return self.tags[-1]


def source_date_epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(raw) if raw.isdigit() else 0


async def build_async(stack_path: str | Path, *, explain: bool = False, docker: aiodocker.Docker | None = None,
                      epoch: int | None = None) -> BuildResult:
    st = stack.load(Path(stack_path))
    refs = [*st.components, *([st.app.layer] if st.app.layer else [])]
    read = [layers.read(ref) for ref in refs]
    init = initbin.compile_init()
    epoch = source_date_epoch() if epoch is None else epoch
    own = docker is None
    client = docker or aiodocker.Docker()
    try:
        base = await engine.read_base(client, st.base)
        decided = plan.plan(base_env=(base.config.get("config") or {}).get("Env") or [], layers=read, app=st.app,
                            init_binary=init)
        lower = set().union(*(tarlayer.paths_of(data) for data in base.layers))
        tars: list[tuple[str, tarlayer.TarLayer]] = []
        for name, files in decided.layers:
            t = tarlayer.build(files, lower_paths=lower, mtime=epoch, dirs=decided.dirs if name == "noops" else ())
            lower |= tarlayer.paths_of(t.data)
            tars.append((name, t))
        labels = {image.LABEL_INIT: "1", image.LABEL_STATS_PORT: str(st.app.stats_port), image.LABEL_STACK: st.name}
        cfg = image.config(base=base, layers=tars, env=decided.env, command=st.app.command, workdir=st.app.workdir,
                           labels=labels, stats_port=st.app.stats_port, epoch=epoch)
        iid = image.image_id(cfg)
        tags = (f"{st.name}:{st.tag}", f"{st.name}:{CONTENT_TAG_PREFIX}{iid.removeprefix('sha256:')[:16]}")
        await engine.load(client, image.archive(config_bytes=cfg, base=base, layers=[t for _, t in tars], tags=tags,
                                                epoch=epoch))
        loaded = await engine.image_id(client, tags[-1])
        if loaded != iid:   # the engine computes ids another way (containerd's store): say so
            raise BuildError("noops", "docker load", f"the engine gave the image id {loaded}, not the config's digest "
                             f"{iid}: this engine's image store does not keep ids reproducible")
    finally:
        if own:
            await client.close()
    return BuildResult(image_id=iid, tags=tags, layers=tuple(name for name, _ in tars),
                       explain=decided.explain if explain else ())


def build(stack_path: str | Path, *, explain: bool = False) -> BuildResult:
    """Build the stack's image on the local engine (DOCKER_HOST or the default socket)."""
    return asyncio.run(build_async(stack_path, explain=explain))
