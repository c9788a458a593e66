"""Bad input is refused before the engine is asked anything, with the layer and the file named;
good input is planned into layers (components, app, noops) with the merged files on top."""
from __future__ import annotations

from pathlib import Path

import pytest

from imagebuild import layers, plan, stack
from imagebuild.errors import BuildError


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def stack_file(tmp_path: Path, components: list[str], app: str = "app", **extra: str) -> Path:
    lines = ["name: noopstest/demo", "base: noops/base:latest", f"components: {components}",
             "app:", "  command: [/bin/sh, -c, 'sleep 1']", *([f"  path: ./{app}"] if app else []),
             *(f"{k}: {v}" for k, v in extra.items())]
    return tree(tmp_path, {"stack.yaml": "\n".join(lines) + "\n"}) / "stack.yaml"


def planned(tmp_path: Path, comps: dict[str, dict[str, str]], app: dict[str, str]) -> plan.Plan:
    for name, files in comps.items():
        tree(tmp_path / name, files)
    tree(tmp_path / "app", app)
    st = stack.load(stack_file(tmp_path, [f"./{n}" for n in comps]))
    read = [layers.read(r) for r in [*st.components, st.app.layer]]  # type: ignore[list-item]
    return plan.plan(base_env=["PATH=/bin"], layers=read, app=st.app, init_binary=b"\x7fELF")


def test_three_layers_plan(tmp_path: Path) -> None:
    p = planned(tmp_path, {"cron": {"config/etc/demo/app.conf": "a=1\nb=2\n", "crontab": "@every 1s echo x\n",
                                    "files/usr/bin/tool": "#!/bin/sh\n"}},
                {"config/etc/demo/app.conf": "b=3\n", "env": "LEVEL=debug\n", "files/app/run.sh": "exit 0\n"})
    assert [name for name, _ in p.layers] == ["cron", "app", "noops"]
    top = p.layers[-1][1]
    assert top["etc/demo/app.conf"].data == b"a=1\nb=3\n"
    assert top["etc/noops/crontab"].data == b"@every 1s echo x\n"
    assert top["noops/init"].mode == 0o755
    assert ("LEVEL", "debug") in p.env and ("PATH", "/bin") in p.env
    assert "/etc/demo/app.conf: b <- app (over cron)" in p.explain
    assert not [line for line in p.explain if ": file <-" in line]   # no plain file is in two layers


def test_a_replaced_plain_file_is_explained(tmp_path: Path) -> None:
    p = planned(tmp_path, {"cron": {"files/etc/motd": "lower\n"}}, {"files/etc/motd": "upper\n"})
    assert [files["etc/motd"].data for _, files in p.layers[:2]] == [b"lower\n", b"upper\n"]
    assert "/etc/motd: file <- app (over cron)" in p.explain


@pytest.mark.parametrize(("comps", "app", "layer", "file", "message"), [
    pytest.param({"cron": {"config/etc/x.conf": "a=1\n"}}, {"files/etc/x.conf": "raw"}, "app", "files/etc/x.conf",
                 "is a plain file here but keyvalue in layer 'cron'", id="config-vs-plain-file"),
    pytest.param({"cron": {"config/etc/x": "a=1\n", "layer.yaml": "formats: {etc/x: keyvalue}\n"}},
                 {"config/etc/x": "{}", "layer.yaml": "formats: {etc/x: json}\n"}, "app", "config/etc/x",
                 "is json here but keyvalue in layer 'cron'", id="two-declared-formats"),
    pytest.param({"cron": {"config/etc/x.conf": "a=1\nnot a pair\n"}}, {}, "cron", "config/etc/x.conf",
                 "line 2: expected key=value", id="bad-keyvalue"),
    pytest.param({"cron": {"crontab": "99 * * * * x\n"}}, {}, "cron", "crontab", "out of 0-59", id="bad-crontab"),
    pytest.param({"cron": {"config/etc/x.yaml": "a: [\n"}}, {"config/etc/x.yaml": "a: 1\n"}, "cron",
                 "config/etc/x.yaml", "not valid YAML", id="bad-yaml-lower"),
    pytest.param({"cron": {"config/etc/x.ini": "a=1\n"}}, {}, "cron", "config/etc/x.ini",
                 "unknown configuration format", id="unknown-format"),
    pytest.param({"cron": {"stray.txt": "?"}}, {}, "cron", "stray.txt", "unexpected entry", id="stray-entry"),
])
def test_bad_layers_name_the_layer_and_file(tmp_path: Path, comps: dict[str, dict[str, str]], app: dict[str, str],
                                            layer: str, file: str, message: str) -> None:
    with pytest.raises(BuildError) as err:
        planned(tmp_path, comps, {"files/app/run.sh": "exit 0\n", **app})
    assert err.value.layer == layer and err.value.file.endswith(file), str(err.value)
    assert message in err.value.message


def test_a_missing_layer_is_named(tmp_path: Path) -> None:
    tree(tmp_path / "app", {"files/a": "x"})
    with pytest.raises(BuildError, match=r"layer 'gone', .*/gone: does not exist"):
        stack.load(stack_file(tmp_path, ["./gone"]))


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("name: x\napp: {command: [a]}\n", "base is required", id="no-base"),
    pytest.param("name: X Y\nbase: b\napp: {command: [a]}\n", "not an image reference", id="bad-name"),
    pytest.param("name: x\nbase: b\napp: {}\n", "command must be", id="no-command"),
    pytest.param("name: x\nbase: b\napp: {command: [a], colour: red}\n", "unknown keys", id="unknown-app-key"),
    pytest.param("name: x\nbase: [\n", "does not parse", id="not-yaml"),
])
def test_bad_stack_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        stack.load(tree(tmp_path, {"s.yaml": text}) / "s.yaml")


def test_a_tarball_layer_reads_as_its_directory(tmp_path: Path) -> None:
    import tarfile
    src = tree(tmp_path / "src", {"config/etc/x.yaml": "a: {b: 1}\n", "files/bin/tool": "#!/bin/sh\n",
                                  "crontab": "0 * * * * /bin/tool\n"})
    (src / "files/bin/tool").chmod(0o755)
    with tarfile.open(tmp_path / "comp.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=".")
    from_dir = layers.read(stack.LayerRef("comp", src))
    from_tar = layers.read(stack.LayerRef("comp", tmp_path / "comp.tar.gz"))
    assert {p: (f.data, f.mode) for p, f in from_tar.files.items()} == {p: (f.data, f.mode) for p, f in from_dir.files.items()}
    assert {p: (c.format, c.data) for p, c in from_tar.config.items()} == {"etc/x.yaml": ("yaml", b"a: {b: 1}\n")}
    assert from_tar.crontab is not None and from_tar.crontab.data == b"0 * * * * /bin/tool\n"


def test_the_command_line_refuses_with_one_line_and_status_1(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imagebuild.main import app
    tree(tmp_path / "app", {"files/a": "x"})
    result = CliRunner().invoke(app, ["build", str(stack_file(tmp_path, ["./gone"]))])
    assert result.exit_code == 1
    assert "noops image build: layer 'gone'" in result.output and "does not exist" in result.output


def test_the_stack_env_and_crontab_are_the_top_layer(tmp_path: Path) -> None:
    tree(tmp_path / "app", {"env": "LEVEL=info\nA=1\n", "crontab": "@every 1m /bin/a\n"})
    text = ("name: x\nbase: b\napp:\n  path: ./app\n  command: [a]\n  env: {LEVEL: debug}\n"
            "  crontab: ['*/5 * * * * /bin/a']\n  ready: {ports: [8080]}\n")
    st = stack.load(tree(tmp_path, {"s.yaml": text}) / "s.yaml")
    p = plan.plan(base_env=["PATH=/bin"], layers=[layers.read(st.app.layer)], app=st.app,  # type: ignore[arg-type]
                  init_binary=b"")
    assert p.env[:3] == (("PATH", "/bin"), ("LEVEL", "debug"), ("A", "1"))
    assert ("NOOPS_INIT_READY_PORTS", "8080") in p.env
    assert p.layers[-1][1]["etc/noops/crontab"].data == b"*/5 * * * * /bin/a\n"
    assert "ENV: LEVEL <- stack (over app)" in p.explain


def test_noops_inits_paths_are_reserved(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is noops-init's"):
        planned(tmp_path, {}, {"files/etc/x": "x", "config/etc/noops/crontab": "@reboot x\n"})
