"""Telephony: the FastAGI server and its call flows, the AMI client, the prompt catalogue.

- `Telephony`: FastAGI + AMI link + call recorder as one running service (`hotline run`).
- `AGIServer`, `AGICall`, `CallerHungUp`: the FastAGI server (panoramisk, with fixes).
- `AMIClient`, `CallCentreState`: the AMI link and what its events mean.
- `flows`: the call scripts (`inbound`, `survey`); `AGIPeer`: Asterisk's side of FastAGI.
- `load_catalogue`, `build_prompts`: the prompt catalogue and its audio.
"""
from ivr.agi import AGICall, AGIError, AGIServer, CallerHungUp
from ivr.agi_peer import AGIPeer
from ivr.ami import AMIAuthError, AMIClient, AMIDisconnected, AMIError, AMINotConnected, OriginateResult
from ivr.ami_state import CallCentreState
from ivr.runtime import Telephony, build_agi_server

__all__ = ["AGICall", "AGIError", "AGIPeer", "AGIServer", "AMIAuthError", "AMIClient", "AMIDisconnected",
           "AMIError", "AMINotConnected", "CallCentreState", "CallerHungUp", "OriginateResult", "Telephony",
           "build_agi_server"]
