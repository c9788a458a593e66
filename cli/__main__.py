"""`python -m cli` = `noops`."""
from cli.main import app

app(prog_name="noops")
