"""Benchmarks, each a script printing one JSON line of figures (see each module's docstring)."""
