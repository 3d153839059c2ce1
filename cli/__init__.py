"""The `visearch` command: one subcommand module per job, each importing its work lazily."""
