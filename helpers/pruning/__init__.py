"""Pruning: unstructured masks (magnitude, Wanda, N:M), structured surgery, schedules."""
