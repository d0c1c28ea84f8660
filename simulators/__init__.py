"""Stand-ins for the departmental platforms and the synthetic county behind them.

This package is the other side of the wire: it imports nothing from the hub.
"""
