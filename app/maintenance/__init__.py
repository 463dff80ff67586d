"""Periodic upkeep: pruning what has outlived its retention."""
