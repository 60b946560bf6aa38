"""Placeholder; replaced by the real CLI."""
import typer
app = typer.Typer()
def main() -> None:
    app()
