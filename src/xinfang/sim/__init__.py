"""Simulators of the bureau's source systems (the real ones are not reachable here)."""
