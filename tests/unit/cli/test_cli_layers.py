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
