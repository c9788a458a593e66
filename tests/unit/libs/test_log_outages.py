"""A library's traceback about an outage noops handles becomes one log line with the error."""
import io
import json
import logging

import pytest

from libs import log as logsetup


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _capture(logger: str) -> str:
    logsetup.setup("test", fmt="json")
    handler = logging.getLogger().handlers[0]
    buf = io.StringIO()
    handler.stream = buf  # type: ignore[attr-defined]
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError:
        logging.getLogger(logger).warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    return buf.getvalue()


def test_asyncpg_pool_outage_is_one_line():
    out = _capture("asyncpg.pool")
    record = json.loads(out)
    assert out.count("\n") == 1 and "exc" not in record
    assert "Connect call failed" in record["error"]


def test_other_tracebacks_are_kept():
    record = json.loads(_capture("noops.placer"))
    assert "Traceback" in record["exc"]
