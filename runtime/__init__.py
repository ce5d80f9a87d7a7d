"""How a process runs the network: devices, thread shares, backends and safe file writes.

Nothing here knows the digit network or the web: ``model.py`` builds on it.
"""
