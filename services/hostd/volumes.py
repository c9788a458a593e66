"""Per-instance volumes: one block device per instance whose size caps what it can write.

Two drivers behind ``VolumeDriver`` (the storage port):

- ``loop``: a sparse image file per instance under the loop directory, attached to a loop
  device, ext4 without reserved blocks, mounted on the host and bind-mounted into the container.
  Used for the whole path on machines without device-mapper.
- ``lvm``: a logical volume per instance in a configured volume group, tagged with the instance
  id (``noops.instance=<id>``), formatted ext4 and mounted like the loop one.  Production's
  driver.  With ``activate=False`` (machines without device-mapper) volumes are created, tagged,
  listed and removed with ``--driverloaded n -an`` but cannot be mounted; ``create`` then says so.

Every operation is idempotent, because hostd re-runs a start after a crash: creating a volume
that is already mounted returns it, removing one that is gone is no error.
"""
from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MIB = 1024 * 1024


class VolumeError(Exception):
    """A volume could not be made or removed; the text is shown to users."""


class VolumeTimeout(VolumeError):
    """A storage command did not finish in time (a hung device, a busy LVM lock): transient, so
    the placement is retried rather than failed."""


class VolumeDriver(Protocol):
    name: str

    async def create(self, instance: str, size_mb: int) -> str:
        """Make (or find) the instance's volume; the host path to bind into the container."""

    async def remove(self, instance: str) -> None: ...

    async def list(self) -> list[str]:
        """Instances that have a volume here."""

    async def free_mb(self) -> int:
        """Capacity not yet promised to any volume."""


async def run(*argv: str, timeout_s: float) -> str:
    """Run a storage command; VolumeError when it fails, VolumeTimeout (after killing it) when it
    takes longer than ``timeout_s``."""
    # LVM tools complain about every inherited descriptor otherwise.
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()  # reaped: a process stuck in the kernel (D state) holds us here, not for ever in ps
        raise VolumeTimeout(f"{argv[0]} did not finish within {timeout_s:g}s") from None
    if proc.returncode != 0:
        raise VolumeError(f"{argv[0]} failed: {err.decode(errors='replace').strip() or proc.returncode}")
    return out.decode()


def _mounted(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == target for line in f)
    except OSError:
        return False


async def _format_and_mount(device: str, mnt: Path, timeout_s: float) -> None:
    # -m 0: no blocks reserved for root, so the instance (root inside) gets ENOSPC at the size.
    await run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard,lazy_itable_init=1", device, timeout_s=timeout_s)
    mnt.mkdir(parents=True, exist_ok=True)
    await run("mount", "-t", "ext4", device, str(mnt), timeout_s=timeout_s)


async def _unmount(mnt: Path, timeout_s: float) -> None:
    if _mounted(mnt):
        await run("umount", str(mnt), timeout_s=timeout_s)
    try:
        mnt.rmdir()
    except FileNotFoundError:
        pass


@dataclass
class LoopVolumes:
    """Sparse files under ``root`` (one directory per hostd); ``capacity_mb`` 0 = the free space
    of the file system holding ``root``."""
    root: Path
    capacity_mb: int = 0
    host: str = ""
    name: str = "loop"
    command_timeout_s: float = 120.0  # each losetup / mkfs / mount (NOOPS_HOSTD_COMMAND_TIMEOUT_S)

    def _img(self, instance: str) -> Path:
        return self.root / f"{instance}.img"

    def _mnt(self, instance: str) -> Path:
        return self.root / f"{instance}.mnt"

    async def create(self, instance: str, size_mb: int) -> str:
        img, mnt = self._img(instance), self._mnt(instance)
        if _mounted(mnt):
            return str(mnt)
        await self.remove(instance)  # a half-made one from a crash: start afresh
        free = await self.free_mb()
        if size_mb > free:
            raise VolumeError(f"volume pool on host {self.host} is full: {size_mb} MiB asked, {free} MiB free")
        self.root.mkdir(parents=True, exist_ok=True)
        with open(img, "wb") as f:
            f.truncate(size_mb * MIB)
        try:
            device = (await run("losetup", "--find", "--show", "--direct-io=on", str(img),
                                timeout_s=self.command_timeout_s)).strip()
        except VolumeTimeout:
            raise
        except VolumeError:  # a backing file system without O_DIRECT
            device = (await run("losetup", "--find", "--show", str(img), timeout_s=self.command_timeout_s)).strip()
        try:
            await _format_and_mount(device, mnt, self.command_timeout_s)
        except VolumeError:
            await self.remove(instance)
            raise
        return str(mnt)

    async def _devices(self, img: Path) -> list[str]:
        out = await run("losetup", "-n", "-O", "NAME", "-j", str(img), timeout_s=self.command_timeout_s)
        return out.split()

    async def remove(self, instance: str) -> None:
        img, mnt = self._img(instance), self._mnt(instance)
        await _unmount(mnt, self.command_timeout_s)
        if img.exists():
            for dev in await self._devices(img):
                await run("losetup", "-d", dev, timeout_s=self.command_timeout_s)
            img.unlink(missing_ok=True)

    async def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name[:-4] for p in self.root.glob("*.img"))

    async def free_mb(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        promised = sum(p.stat().st_size for p in self.root.glob("*.img")) // MIB
        if self.capacity_mb:
            return max(self.capacity_mb - promised, 0)
        st = os.statvfs(self.root)
        # Sparse files use space only as they are written: count what is promised, not used.
        used = sum(p.stat().st_blocks * 512 for p in self.root.glob("*.img")) // MIB
        return max(st.f_bavail * st.f_frsize // MIB + used - promised, 0)

    async def loop_devices(self) -> int:
        """How many loop devices back our images (leak checks)."""
        return sum([len(await self._devices(img)) for img in self.root.glob("*.img")]) if self.root.is_dir() else 0


_TAG_OK = re.compile(r"[^A-Za-z0-9_+.\-/=!:#&]")


def lv_name(instance: str) -> str:
    return "noops_" + re.sub(r"[^A-Za-z0-9_.+-]", "_", instance)


@dataclass
class LvmVolumes:
    """Logical volumes in ``vg``.  ``activate=False``: metadata only (no device-mapper)."""
    vg: str
    mount_root: Path
    activate: bool = True
    host: str = ""
    name: str = "lvm"
    command_timeout_s: float = 120.0  # each lv* / vgs / mkfs / mount (NOOPS_HOSTD_COMMAND_TIMEOUT_S)

    def _dm_args(self) -> list[str]:
        return [] if self.activate else ["--driverloaded", "n"]

    async def create(self, instance: str, size_mb: int) -> str:
        mnt = self.mount_root / instance
        if _mounted(mnt):
            return str(mnt)
        lv = lv_name(instance)
        if instance not in await self.list():
            free = await self.free_mb()
            if size_mb > free:
                raise VolumeError(f"volume group {self.vg} on host {self.host} is full: "
                                  f"{size_mb} MiB asked, {free} MiB free")
            extra = [] if self.activate else ["-an", "-Zn", "-Wn"]
            await run("lvcreate", *self._dm_args(), "-q", "-y", "-n", lv, "-L", f"{size_mb}m",
                      "--addtag", "noops.instance=" + _TAG_OK.sub("_", instance), *extra, self.vg,
                      timeout_s=self.command_timeout_s)
        if not self.activate:
            raise VolumeError(f"logical volume {self.vg}/{lv} was created but cannot be activated "
                              "on this host (no device-mapper)")
        await _format_and_mount(f"/dev/{self.vg}/{lv}", mnt, self.command_timeout_s)
        return str(mnt)

    async def remove(self, instance: str) -> None:
        await _unmount(self.mount_root / instance, self.command_timeout_s)
        if instance in await self.list():
            await run("lvremove", *self._dm_args(), "-q", "-y", f"{self.vg}/{lv_name(instance)}",
                      timeout_s=self.command_timeout_s)

    async def list(self) -> list[str]:
        out = await run("lvs", *self._dm_args(), "--noheadings", "-o", "lv_tags", self.vg,
                        timeout_s=self.command_timeout_s)
        found = []
        for line in out.splitlines():
            for tag in line.strip().split(","):
                if tag.startswith("noops.instance="):
                    found.append(tag.removeprefix("noops.instance="))
        return sorted(found)

    async def free_mb(self) -> int:
        out = await run("vgs", *self._dm_args(), "--noheadings", "--units", "m", "--nosuffix", "-o", "vg_free",
                        self.vg, timeout_s=self.command_timeout_s)
        return int(float(out.strip() or 0))
