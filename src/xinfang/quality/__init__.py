"""Data-quality gates (Great Expectations) that stand between the warehouse and publication."""
