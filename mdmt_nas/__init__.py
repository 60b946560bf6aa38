"""mdmt-nas: plugin-extensible architecture search for multi-domain, multi-task recommendation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mdmt-nas")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str):
    """`from mdmt_nas import hookimpl`: the plugin decorator, imported on first use (the package import stays light)."""
    if name == "hookimpl":
        from mdmt_nas.plugins.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
