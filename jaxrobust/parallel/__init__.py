"""Parallelism: the device mesh, logical axis rules and every multi-host helper."""
