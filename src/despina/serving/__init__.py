"""HTTP interfaces: the control-plane REST API (and, later, model serving)."""
