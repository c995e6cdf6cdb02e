"""The ecosystem simulator: the demo, the load generators (benchmarks) and simulated
outside parties (`phone.py`: a phone with a WebAuthn platform authenticator).

It drives the platform from outside, through the same public interfaces a real
counterpart would use; nothing in the platform imports it.
"""
