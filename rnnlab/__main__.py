from rnnlab.cli import app

app(prog_name="rnnlab")
