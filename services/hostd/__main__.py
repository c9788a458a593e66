"""`python -m services.hostd`."""
from services.hostd.main import run

run()
