"""The modelbrowse terminal app: screens, key bindings and the command-line entry point."""
