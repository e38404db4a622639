"""Loading source-system data into the warehouse's raw layer."""
