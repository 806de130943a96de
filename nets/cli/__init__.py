"""The ``nets`` command (``nets.cli:main``); one module per command group, registered statically."""

from nets.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
