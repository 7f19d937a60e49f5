"""Core: the exception tree, configuration, the plug-in registry and progress reporting."""
