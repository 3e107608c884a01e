"""Asterisk configuration: pjsip, extensions, queues, manager, musiconhold and modules, from the settings.

    render_config(settings, queues=None) → {file name: text}
    write_config(settings, out_dir)      → the files written
    config_warnings(settings)            → legal but unsafe settings (default secrets), for the CLI
    agent_sip_password(secret, ext)      → the SIP password of an agent extension

`asterisk_conf` imports `hotline` and `routing` only. A setting that cannot be written safely
raises ConfigError naming it.
"""
from __future__ import annotations

from asterisk_conf.render import (
                                  AGENT_CONTEXT,
                                  AMI_READ,
                                  AMI_WRITE,
                                  CONFIG_FILES,
                                  INBOUND_CONTEXT,
                                  SURVEY_CONTEXT,
                                  SURVEY_EXTEN,
                                  TRANSFER_CONTEXT,
                                  TRUNK_ENDPOINT,
                                  VOICEMAIL_CONTEXT,
                                  VOICEMAIL_QUEUE_STATUSES,
                                  ConfigError,
                                  QueuePlan,
                                  agent_sip_password,
                                  config_warnings,
                                  plan_queues,
                                  render_config,
                                  routed_queues,
                                  write_config,
)

__all__ = ["AGENT_CONTEXT", "AMI_READ", "AMI_WRITE", "CONFIG_FILES", "INBOUND_CONTEXT", "SURVEY_CONTEXT",
           "SURVEY_EXTEN", "TRANSFER_CONTEXT", "TRUNK_ENDPOINT", "VOICEMAIL_CONTEXT", "VOICEMAIL_QUEUE_STATUSES",
           "ConfigError", "QueuePlan", "agent_sip_password", "config_warnings", "plan_queues", "render_config",
           "routed_queues", "write_config"]
