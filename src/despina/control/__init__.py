"""The control plane: clusters, task groups and tasks, stored in SQL and run locally or on Ray."""
