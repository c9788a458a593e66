"""Where the CLI finds its gateway and token: flag > environment > .noops/admin-token and the default."""
from pathlib import Path

import pytest

from cli import config
from cli.errors import AUTH, USAGE, CliError


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".noops").mkdir()
    (tmp_path / ".noops" / "admin-token").write_text("from-file\n")
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("flags, env, want", [
    ((None, None), {}, (config.DEFAULT_GATEWAY, "from-file", "file")),
    ((None, None), {"NOOPS_GATEWAY": "http://gw:1/", "NOOPS_TOKEN": "from-env"}, ("http://gw:1", "from-env", "NOOPS_TOKEN")),
    (("https://flag:2", "from-flag"), {"NOOPS_GATEWAY": "http://gw:1", "NOOPS_TOKEN": "from-env"},
     ("https://flag:2", "from-flag", "--token")),
    ((None, None), {"NOOPS_TOKEN": ""}, (config.DEFAULT_GATEWAY, "from-file", "file")),
], ids=["defaults", "environment", "flags-win", "empty-env-is-unset"])
def test_precedence(repo: Path, flags, env, want) -> None:
    cfg = config.resolve(*flags, env, repo / "sub" / "dir")
    source = "file" if cfg.token_source == str(repo / ".noops" / "admin-token") else cfg.token_source
    assert (cfg.gateway, cfg.token, source) == want


def test_no_token_anywhere(tmp_path: Path) -> None:
    cfg = config.resolve(None, None, {}, tmp_path)
    assert (cfg.token, cfg.token_source) == (None, "none")


def test_a_gateway_that_is_no_url_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(CliError) as e:
        config.resolve("127.0.0.1:8700", None, {}, tmp_path)
    assert e.value.code == USAGE and "http://" in e.value.message


def test_an_unreadable_token_file_is_an_auth_error(tmp_path: Path) -> None:
    (tmp_path / ".noops").mkdir()
    (tmp_path / ".noops" / "admin-token").write_bytes(b"\xff\xfe")
    with pytest.raises(CliError) as e:
        config.resolve(None, None, {}, tmp_path)
    assert e.value.code == AUTH and "admin-token" in e.value.message
