"""The call flows, written as the call script reads (filled in by the telephony issue)."""

# the FastAGI routes Asterisk calls: agi://<host>:<port>/<route>
AGI_ROUTES = ("inbound", "survey")
