"""Telephony: the FastAGI server and its call flows, the AMI client, call records, the prompts.

Other parts use what is named here:
- `Telephony`: FastAGI + AMI link + call recorder as one running service (`hotline run`).
- `AGIServer`, `AGICall`, `CallerHungUp`: the FastAGI server (panoramisk, with fixes).
- `AMIClient`, `CallCentreState`, the `AMI…Error`s: the AMI link and what its events mean.
- Call records: `Call`, `record_call`, `calls_of_case`, `recording_facts`, `RecordingRejected`; for the
  desk: `calls_from` (重复来电), `current_call_of`, `get_call`, `recording_file` (inside the spool only).
- The agents' voicemail list: `open_messages`, `message_file`, `message_to_case`, `merge_message`,
  `dismiss_message` (`MessageNotOpen` when it is not waiting).
- `build_prompts`, `load_catalogue`, `PromptError`: the prompt catalogue and its audio;
  `simulate_call`: a call played into the flows without a PBX.
(The test peer speaking Asterisk's side of FastAGI is `ivr.agi_peer`, for tests and benchmarks.)
"""
from ivr.agi import AGICall, AGIError, AGIServer, CallerHungUp
from ivr.ami import AMIAuthError, AMIClient, AMIDisconnected, AMIError, AMINotConnected, OriginateResult
from ivr.ami_state import CallCentreState
from ivr.calls import (RecordingRejected, calls_from, calls_of_case, current_call_of, get_call, record_call,
                       recording_facts, recording_file)
from ivr.models import Call
from ivr.prompts import PromptError, build_prompts, load_catalogue
from ivr.runtime import Telephony, build_agi_server
from ivr.simulate import simulate_call
from ivr.voicemail import MessageNotOpen
from ivr.voicemail import convert as message_to_case
from ivr.voicemail import dismiss as dismiss_message
from ivr.voicemail import merge as merge_message
from ivr.voicemail import message_file, open_messages

__all__ = ["AGICall", "AGIError", "AGIServer", "AMIAuthError", "AMIClient", "AMIDisconnected", "AMIError",
           "AMINotConnected", "Call", "CallCentreState", "CallerHungUp", "MessageNotOpen", "OriginateResult",
           "PromptError", "RecordingRejected", "Telephony", "build_agi_server", "build_prompts", "calls_from",
           "calls_of_case", "current_call_of", "get_call", "recording_file",
           "dismiss_message", "load_catalogue", "merge_message", "message_file", "message_to_case",
           "open_messages", "record_call", "recording_facts", "simulate_call"]
