"""Data: instruction templates and the readers of the benchmark data files."""
