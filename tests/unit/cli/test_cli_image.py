"""`noops image build` is imagebuild's command inside the CLI: a refused stack is one line, exit 1."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_image_build_refuses_a_stack_without_base_in_one_line(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("name: demo\n")
    out = subprocess.run([sys.executable, "-m", "cli.main", "image", "build", str(stack)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "layer 'base'" in lines[0] and "base is required" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
