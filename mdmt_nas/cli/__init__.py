"""The `mdmt-nas` command line."""

from mdmt_nas.cli.app import app, main

__all__ = ["app", "main"]
