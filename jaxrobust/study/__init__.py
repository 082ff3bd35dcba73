"""The built-in study: generated worlds, their vocabulary, the end-to-end pipeline."""
