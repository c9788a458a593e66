"""nftables in-process, through libnftables (the library the ``nft`` command is built on), so a
sink update is one library call (~0.2 ms here) instead of a fork and exec of ``nft`` (~4 ms, more
on a busy host): the whitelist was the slowest of the three sinks (bench/RESULTS.md).

``LibNft.run`` takes the same arguments as the command (``-j`` for JSON output, ``-f -`` with a
script, or one command's words), so the sink is written once for both runners.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
from collections.abc import Sequence

_OUTPUT_JSON = 1 << 4   # NFT_CTX_OUTPUT_JSON (nftables/libnftables.h)


class LibNftError(RuntimeError):
    pass


def load() -> ctypes.CDLL | None:
    """The library, or None where it is not installed (then the sink runs the ``nft`` command)."""
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class LibNft:
    """One libnftables context per output mode, used by one thread at a time (the library's
    contexts are not thread-safe; calls run in a worker thread so a big set never stalls the
    event loop)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._ctx = {json: self._new(json) for json in (False, True)}

    def _new(self, json: bool) -> int:
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise LibNftError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        if json:
            self._lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON)
        return ctx

    def _run(self, json: bool, text: str) -> str:
        with self._lock:
            ctx = self._ctx[json]
            rc = self._lib.nft_run_cmd_from_buffer(ctx, text.encode())
            out = (self._lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        if rc != 0:
            raise LibNftError(err.strip()[:500] or f"libnftables returned {rc}")
        return out

    async def run(self, args: Sequence[str], script: str | None = None) -> str:
        args = list(args)
        json = "-j" in args
        if json:
            args.remove("-j")
        text = script if args[:2] == ["-f", "-"] else " ".join(args)
        return await asyncio.to_thread(self._run, json, text or "")

    def close(self) -> None:
        with self._lock:
            for ctx in self._ctx.values():
                self._lib.nft_ctx_free(ctx)
            self._ctx = {}
