"""Analysis: metrics, statistics, the SemEval scorer and the report; imports no JAX."""
