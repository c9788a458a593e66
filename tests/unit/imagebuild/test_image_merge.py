"""The configuration merge, per format, as tables: layers' texts in, merged text and who set what out."""
from __future__ import annotations

import pytest

from imagebuild import merge

CASES = [
    pytest.param("keyvalue", [("cron", "greeting=hello\ncolor=blue\n"), ("app", "color=red\n")],
                 "greeting=hello\ncolor=red\n", {"greeting": ("cron",), "color": ("cron", "app")},
                 id="keyvalue-upper-key-wins-order-kept"),
    pytest.param("keyvalue", [("a", "# c\n\nx = 1\n"), ("b", "y=2\n; note\n")], "x=1\ny=2\n",
                 {"x": ("a",), "y": ("b",)}, id="keyvalue-comments-dropped-new-keys-appended"),
    pytest.param("keyvalue", [("a", "url=http://h/?q=1\n")], "url=http://h/?q=1\n", {"url": ("a",)},
                 id="keyvalue-one-layer-kept-verbatim"),
    pytest.param("env", [("base", "PATH=/bin\n"), ("app", "PATH=/app/bin:/bin\nLEVEL=debug\n")],
                 "PATH=/app/bin:/bin\nLEVEL=debug\n", {"PATH": ("base", "app"), "LEVEL": ("app",)}, id="env"),
    pytest.param("json", [("a", '{"db": {"host": "x", "port": 1}, "tags": [1, 2]}'),
                          ("b", '{"db": {"port": 2}, "tags": [3]}')],
                 '{\n  "db": {\n    "host": "x",\n    "port": 2\n  },\n  "tags": [\n    3\n  ]\n}\n',
                 {"db.host": ("a",), "db.port": ("a", "b"), "tags": ("a", "b")}, id="json-deep-lists-replaced"),
    pytest.param("yaml", [("a", "db:\n  host: x\n  opts: {a: 1}\n"), ("b", "db:\n  opts: off\n")],
                 "db:\n  host: x\n  opts: false\n", {"db.host": ("a",), "db.opts": ("b",)},
                 id="yaml-scalar-replaces-mapping"),
    pytest.param("yaml", [("a", "x: 1\n"), ("b", "x: {y: 2}\n")], "x:\n  y: 2\n", {"x.y": ("b",)},
                 id="yaml-mapping-replaces-scalar"),
    pytest.param("yaml", [("a", ""), ("b", "k: v\n")], "k: v\n", {"k": ("b",)}, id="yaml-empty-is-an-empty-mapping"),
    pytest.param("crontab", [("cron", "*/5 * * * * /bin/tick\n@every 1s /bin/beat\n"),
                             ("app", "0 * * * * /bin/tick\nMAILTO=x\n")],
                 "0 * * * * /bin/tick\n@every 1s /bin/beat\nMAILTO=x\n",
                 {"job /bin/tick": ("cron", "app"), "job /bin/beat": ("cron",), "var MAILTO": ("app",)},
                 id="crontab-entries-merged-by-command"),
]


@pytest.mark.parametrize(("fmt", "layers", "merged", "sources"), CASES)
def test_merge(fmt: str, layers: list[tuple[str, str]], merged: str, sources: dict[str, tuple[str, ...]]) -> None:
    m = merge.merge(fmt, [(layer, text.encode()) for layer, text in layers])
    assert m.data.decode() == merged
    assert dict(m.sources) == sources


BAD = [
    pytest.param("keyvalue", "ok=1\njust words\n", "line 2: expected key=value", id="keyvalue-no-equals"),
    pytest.param("keyvalue", "two words=1\n", "line 1", id="keyvalue-space-in-key"),
    pytest.param("json", '{"a": ', "not valid JSON", id="json-truncated"),
    pytest.param("json", "[1, 2]", "top level must be a mapping", id="json-list-top"),
    pytest.param("yaml", "a: [1,\n", "not valid YAML", id="yaml-unclosed"),
    pytest.param("yaml", "- a\n", "top level must be a mapping", id="yaml-list-top"),
    pytest.param("crontab", "* * * *\n", "line 1: expected 5 schedule fields", id="crontab-four-fields"),
    pytest.param("crontab", "# ok\n61 * * * * x\n", "line 2: minute '61': out of 0-59", id="crontab-minute-61"),
    pytest.param("crontab", "@hourly x\n", "only @reboot and @every", id="crontab-unknown-macro"),
    pytest.param("crontab", "@every soon x\n", "@every 'soon'", id="crontab-bad-period"),
]


@pytest.mark.parametrize(("fmt", "text", "message"), BAD)
def test_a_file_that_does_not_parse_says_where(fmt: str, text: str, message: str) -> None:
    with pytest.raises(merge.ParseError, match=message.replace("[", r"\[").replace("*", r"\*")):
        merge.parse(fmt, text)
