"""`python -m modelbrowse.tui` runs the command-line entry point."""

from modelbrowse.tui.cli import run

run()
