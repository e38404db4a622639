"""What every DAG shares: schedules, assets, default arguments, runtime environment."""
