"""Autoscaling: the strategy protocol and its built-in strategies, and the supervisor that applies their decisions."""
