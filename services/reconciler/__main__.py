from services.reconciler.main import run

run()
