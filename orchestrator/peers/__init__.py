"""Peer problems (OpenEvolve, ShinkaEvolve) run unchanged, scored honestly: docs/peers.md."""
