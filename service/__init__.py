"""Serving side of alignserve: settings, errors and the model runtime (no torch)."""
