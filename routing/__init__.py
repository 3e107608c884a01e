"""Routing: from what a caller says to a place and who handles it.

Now: the administrative divisions shipped per city (`load_divisions`). The address
locator (`locate`, `locate_point`) and the rules from place to handling unit arrive with
the routing issue; `routing` imports no other part and does no I/O at call time.
"""
from routing.divisions import Division, DivisionError, load_divisions

__all__ = ["Division", "DivisionError", "load_divisions"]
