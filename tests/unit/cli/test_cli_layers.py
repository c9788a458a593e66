"""The CLI is a thin client: it imports no service (services/*), and from libs/ nothing."""
import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[3] / "cli"


def test_cli_imports_no_service_and_no_lib() -> None:
    bad = []
    for f in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{f.name}: {n}" for n in names if n.split(".")[0] in ("services", "libs", "devtools")]
    assert not bad, bad


def test_the_console_script_names_the_app() -> None:
    import importlib
    import tomllib

    project = tomllib.loads((CLI.parent / "pyproject.toml").read_text())
    module, _, attr = project["project"]["scripts"]["noops"].partition(":")
    from cli.main import NoopsApp
    assert isinstance(getattr(importlib.import_module(module), attr), NoopsApp)
    assert "cli*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"typer>=0.12", "rich>=13", "PyYAML>=6", "httpx>=0.27"} <= set(project["project"]["dependencies"])
