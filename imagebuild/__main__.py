from imagebuild.main import app

app()
