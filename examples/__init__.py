"""Example experiment configs, shipped as package data (`--config m3oe` finds them)."""
