"""Executors of an Optuna search: where its candidates train (local: this process; ray: Ray actors, see ray.py)."""
