"""Running a node: logs, metrics, health checks."""
