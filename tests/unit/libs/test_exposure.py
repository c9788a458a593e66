"""Development defaults on a reachable address are refused (libs/exposure.py), and the database
password file is merged into the DSN (libs/db.py)."""
import dataclasses

import pytest

from libs import db, exposure
from libs.settings import CommonSettings, SettingsError

LOCAL_NATS = "nats://127.0.0.1:4222"


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("", True), ("/run/postgresql", True),
    ("198.18.0.5", False), ("db.example", False), ("0.0.0.0", False), ("::", False),
], ids=lambda v: str(v) or "empty")
def test_is_loopback(host, loopback):
    assert exposure.is_loopback(host) is loopback


@pytest.mark.parametrize("dsn,password,nats_url,user,uses_db,refused", [
    pytest.param("postgresql://noops:noops@127.0.0.1:5432/noops", "", LOCAL_NATS, "", True, [], id="all-local"),
    pytest.param("postgresql://noops:noops@db.example:5432/noops", "", LOCAL_NATS, "", True, ["database"],
                 id="remote-db-dev-password-in-dsn"),
    pytest.param("postgresql://noops@db.example/noops", "noops", LOCAL_NATS, "", True, ["database"],
                 id="remote-db-dev-password-in-file"),
    pytest.param("postgresql://noops@db.example/noops", "3f9c1d0a7e", LOCAL_NATS, "", True, [],
                 id="remote-db-generated-password"),
    pytest.param("postgresql://noops:noops@127.0.0.1:5432,db.example:5432/noops", "", LOCAL_NATS, "", True,
                 ["database"], id="multi-host-dsn-one-remote"),
    pytest.param("postgresql://noops:postgres@/noops?host=/run/postgresql", "", LOCAL_NATS, "", True, [],
                 id="unix-socket"),
    pytest.param("postgresql://noops:noops@db.example/noops", "", LOCAL_NATS, "", False, [],
                 id="hostd-uses-no-database"),
    pytest.param("postgresql://noops@127.0.0.1/noops", "", "nats://nats.example:4222", "", True, ["NATS"],
                 id="remote-nats-without-credentials"),
    pytest.param("postgresql://noops@127.0.0.1/noops", "", "nats://127.0.0.1:4222,nats://198.18.0.9:4222", "",
                 True, ["NATS"], id="nats-cluster-one-remote"),
    pytest.param("postgresql://noops@127.0.0.1/noops", "", "nats://nats.example:4222", "placer", True, [],
                 id="remote-nats-with-user"),
    pytest.param("postgresql://noops:noops@db.example/x", "", "nats://n.example:4222", "", True,
                 ["database", "NATS"], id="both"),
])
def test_insecure_defaults(dsn, password, nats_url, user, uses_db, refused):
    problems = exposure.insecure_defaults(db_dsn=dsn, db_password=password, nats_url=nats_url, nats_user=user,
                                          uses_db=uses_db)
    assert len(problems) == len(refused)
    for problem, word in zip(problems, refused):
        assert word in problem


def _common(tmp_path, dsn: str, password: str | None) -> CommonSettings:
    path = ""
    if password is not None:
        f = tmp_path / "pw"
        f.write_text(password + "\n")
        path = str(f)
    return dataclasses.replace(CommonSettings(), db_dsn=dsn, db_password_file=path)


@pytest.mark.parametrize("dsn,password,want", [
    ("postgresql://noops@127.0.0.1:5432/noops", None, "postgresql://noops@127.0.0.1:5432/noops"),
    ("postgresql://noops@127.0.0.1:5432/noops", "s3cret", "postgresql://noops:s3cret@127.0.0.1:5432/noops"),
    ("postgresql://noops:old@127.0.0.1/noops?sslmode=require", "n/e@w", "postgresql://noops:n%2Fe%40w@127.0.0.1/noops?sslmode=require"),
], ids=["no-file", "file", "file-overrides-and-is-quoted"])
def test_dsn_of(tmp_path, dsn, password, want):
    assert db.dsn_of(_common(tmp_path, dsn, password)) == want


def test_unreadable_password_file_is_a_settings_error(tmp_path):
    common = dataclasses.replace(CommonSettings(), db_password_file=str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="NOOPS_DB_PASSWORD_FILE"):
        db.dsn_of(common)
