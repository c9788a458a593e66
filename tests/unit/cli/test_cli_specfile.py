"""App specs from JSON or YAML files; bad files are usage errors that say where."""
from pathlib import Path

import pytest

from cli import specfile
from cli.errors import USAGE, CliError

YAML = """\
id: web
image: noops/base:latest
instances: 2
ports:
  - {name: http, container_port: 8080}
"""


def test_yaml_and_json_give_the_same_spec(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML)
    (tmp_path / "a.json").write_text('{"id": "web", "image": "noops/base:latest", "instances": 2,'
                                     ' "ports": [{"name": "http", "container_port": 8080}]}')
    (tmp_path / "a.spec").write_text(YAML)  # no telling suffix: JSON first, then YAML
    specs = [specfile.load(str(tmp_path / n)) for n in ("a.yaml", "a.json", "a.spec")]
    assert specs[0] == specs[1] == specs[2] and specs[0]["instances"] == 2


@pytest.mark.parametrize("name, text, says", [
    ("bad.json", '{"id": "web",\n "instances": }', "not valid JSON: Expecting value at line 2 column 15"),
    ("bad.yaml", "id: web\n  image: [x\n", "not valid YAML or JSON"),
    ("list.yaml", "- id: web\n", "an app spec is an object"),
    ("noid.json", '{"image": "noops/base:latest"}', 'needs an "id"'),
], ids=["json-syntax", "yaml-syntax", "not-an-object", "no-id"])
def test_bad_files(tmp_path: Path, name: str, text: str, says: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(CliError) as e:
        specfile.load(str(tmp_path / name))
    assert e.value.code == USAGE and says in e.value.message and name in e.value.message


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CliError) as e:
        specfile.load(str(tmp_path / "nope.json"))
    assert e.value.code == USAGE and "No such file" in e.value.message
