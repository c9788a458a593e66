from services.placer.main import run

run()
