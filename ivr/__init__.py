"""Telephony: the FastAGI server and its call flows, the AMI client, the prompt catalogue.

Arrives with the telephony issue; it builds on `case_bridge` and `hotline`.
"""
