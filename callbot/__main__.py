"""``python -m callbot``: the same console script as ``callbot``."""

from callbot.app.cli import main

main(prog_name="callbot")
