"""The gateway's error bodies as the CLI's one-line errors and exit codes."""
import pytest

from cli import errors


@pytest.mark.parametrize("status, body, source, code, text", [
    (422, {"error": "invalid app spec", "details": [{"field": "resources.cpus", "reason": "must be > 0"}]}, "--token",
     errors.USAGE, "invalid app spec: resources.cpus: must be > 0"),
    (422, {"error": "invalid app spec", "details": [{"field": "id", "reason": "a"}, {"field": "", "reason": "b"}]},
     "--token", errors.USAGE, "invalid app spec: id: a; b"),
    (401, {"error": "authentication required", "details": [{"field": "Authorization",
                                                            "reason": "unknown, expired or revoked token"}]},
     "NOOPS_TOKEN", errors.AUTH, "authentication required: Authorization: unknown, expired or revoked token "
                                 "(token from NOOPS_TOKEN)"),
    (401, {"error": "authentication required"}, "none", errors.AUTH, "authentication required (no token: pass --token"),
    (403, {"error": "forbidden", "details": [{"field": "Authorization",
                                             "reason": "needs the operator role; token 'v' has viewer"}]},
     "--token", errors.AUTH, "forbidden: Authorization: needs the operator role; token 'v' has viewer"),
    (404, {"error": "app 'x' not found"}, "--token", errors.NOT_FOUND, "app 'x' not found"),
    (409, {"error": "app 'x' already exists"}, "--token", errors.CONFLICT, "app 'x' already exists"),
    (413, {"error": "request body too large"}, "--token", errors.USAGE, "request body too large"),
    (503, {"error": "task log unavailable, retry"}, "--token", errors.SERVER, "task log unavailable, retry"),
    (502, None, "--token", errors.SERVER, "HTTP 502"),
], ids=["422-field", "422-several", "401-bad-token", "401-no-token", "403-role", "404", "409", "413", "503",
        "502-not-json"])
def test_from_answer(status, body, source, code, text) -> None:
    e = errors.from_answer(status, body, token_source=source)
    assert e.code == code and e.message.startswith(text), e.message
    assert "\n" not in e.message


def test_codes_are_distinct() -> None:
    assert len(set(errors.CODES)) == len(errors.CODES) == 11
