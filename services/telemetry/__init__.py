"""What the running service tells its operators: metrics (through Ray's exporter) and JSON logs."""
