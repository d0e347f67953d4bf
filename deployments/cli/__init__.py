"""The ``coe`` command line: one subcommand module per task, wired in :mod:`deployments.cli.main`."""
