"""The ecosystem simulator: the demo and the load generators (benchmarks).

It drives the platform from outside, through the same public interfaces a real
counterpart would use; nothing in the platform imports it.
"""
