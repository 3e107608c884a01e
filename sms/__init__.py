"""The SMS channel: connectors (SMPP first), inbound classification, outbound from the outbox.

Arrives with the SMS issue; it builds on `case_bridge` and `hotline`.
"""
