"""One module per CLI subcommand; each exposes ``register(app: typer.Typer)``."""
