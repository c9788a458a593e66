"""The local Docker engine, the build's only I/O with it: read the base image (`docker save`),
load the assembled archive (`docker load`), remove images.  No registry is asked for anything."""
from __future__ import annotations

import io
import json
import tarfile

import aiodocker

from imagebuild.errors import BuildError
from imagebuild.image import Base


async def read_base(docker: aiodocker.Docker, ref: str) -> Base:
    try:
        await docker.images.inspect(ref)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise BuildError("base", ref, "no such image on the local engine (build it first, e.g. "
                             "scripts/build-base-image.sh; there is no registry to pull from)") from None
        raise BuildError("base", ref, f"the engine refused to describe it: {exc.message}") from None
    saved = bytearray()
    async with docker.images.export_image(ref) as stream:
        async for chunk in stream.iter_chunked(1 << 20):
            saved += chunk
    with tarfile.open(fileobj=io.BytesIO(bytes(saved))) as tar:
        def member(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None, name
            return f.read()
        [entry] = json.loads(member("manifest.json"))
        config = json.loads(member(entry["Config"]))
        layers = tuple(member(name) for name in entry["Layers"])
    return Base(config=config, layers=layers)


async def load(docker: aiodocker.Docker, archive: bytes) -> None:
    try:
        await docker.images.import_image(data=archive)
    except aiodocker.DockerError as exc:
        raise BuildError("noops", "docker load", f"the engine refused the image: {exc.message}") from None


async def image_id(docker: aiodocker.Docker, ref: str) -> str:
    return str((await docker.images.inspect(ref))["Id"])
