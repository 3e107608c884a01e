"""The SMS channel: connectors (SMPP first), inbound classification, outbound from the outbox.

- `inbound.receive`: store an MO once and classify it (opt-out, survey answer, progress query, report).
- `inbox`: the agents' SMS work list (open items, to a case, merged into a case).
"""
