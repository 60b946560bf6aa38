"""mdmt-nas: plugin-extensible architecture search for multi-domain, multi-task recommendation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mdmt-nas")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
