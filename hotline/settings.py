"""Settings from HOTLINE_* environment variables and an optional TOML file.

Precedence: environment, then the TOML file named by HOTLINE_CONFIG (or ./hotline.toml
when present), then defaults. Everything is validated at start; a wrong value raises
SettingsError naming the setting and what is wrong with it.
"""
from __future__ import annotations

import ipaddress
import os
import re
from datetime import time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

ENV_PREFIX = "HOTLINE_"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says which one and why."""


def _config_file() -> Path | None:
    named = os.environ.get("HOTLINE_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"HOTLINE_CONFIG names {path}, which is not a readable file")
        return path
    default = Path("hotline.toml")
    return default if default.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # where the embedded default keeps its files (database, broker, recordings)
    data_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    web_host: str = "127.0.0.1"
    web_port: int = Field(8319, ge=1, le=65535)

    # logging: INFO says what a person needs; DEBUG adds every tick and request; json for collectors
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field("text", pattern="^(text|json)$")

    timezone: str = "Asia/Shanghai"
    phone_region: str = Field("CN", min_length=2, max_length=2)
    city_name: str = "深圳市"

    # case core
    description_max_length: int = Field(2000, ge=50, le=20000)
    duplicate_window_hours: float = Field(72, gt=0)
    duplicate_distance_m: float = Field(50, gt=0)
    categories_file: Path | None = None
    time_limits_file: Path | None = None
    calendar_file: Path | None = None

    # routing: the gazetteer ("" = the one `hotline routing import` installed in data_dir, else
    # Shenzhen as shipped; or a shipped city's name, a gazetteer folder, a compiled index file)
    gazetteer: str = ""
    routing_rules_file: Path | None = None    # default: the gazetteer folder's rules.csv
    auto_route_threshold: float = Field(0.9, ge=0, le=1)  # placements at or above it are dispatched at once
    open311_public_read: bool = False  # GET requests without an api_key

    # outbox
    outbox_poll_seconds: float = Field(2.0, gt=0)
    outbox_batch_size: int = Field(50, ge=1, le=1000)
    outbox_lease_seconds: int = Field(120, ge=5)
    outbox_max_attempts: int = Field(8, ge=1)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    overdue_scan_seconds: float = Field(60.0, gt=0)

    # satisfaction callbacks are placed inside these local hours
    callback_hours_start: time = time(9, 0)
    callback_hours_end: time = time(20, 0)
    survey_delay_minutes: int = Field(30, ge=0)

    # which parts contribute outbox effects (imported by the worker)
    effect_plugins: list[str] = ["case_bridge.webhook", "ivr.survey_call"]

    # telephony: our FastAGI server, and how Asterisk reaches it
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(4573, ge=1, le=65535)
    agi_public_host: str = ""          # the address Asterisk dials for agi://; "" = agi_host
    # who may open a FastAGI session: the Asterisk servers' addresses or networks (the port is unauthenticated)
    agi_permit: list[str] = ["127.0.0.1/32", "::1/128"]
    agi_header_timeout_seconds: float = Field(5.0, gt=0)
    agi_command_timeout_seconds: float = Field(60.0, gt=0)  # a reply slower than this ends the session
    # the AMI link to Asterisk
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(5038, ge=1, le=65535)
    ami_username: str = "hotline"
    ami_secret: str = "change-me"
    ami_ping_seconds: float = Field(10.0, gt=0)
    ami_ping_timeout_seconds: float = Field(5.0, gt=0)
    ami_reconnect_max_seconds: float = Field(30.0, gt=0)
    ami_permit: str = "127.0.0.1/255.255.255.255"  # manager.conf permit for our AMI user
    # the PBX side of the configuration rendered by `hotline asterisk-config`
    # asterisk.conf systemname: the prefix of this server's uniqueids (unique per Asterisk server of the hotline)
    asterisk_systemname: str = Field("hotline1", pattern=r"^[A-Za-z0-9_]{1,32}$")
    asterisk_spool_dir: Path = Path("/var/spool/asterisk/monitor")  # MixMonitor writes <yyyy>/<mm>/<dd>/<uniqueid>.wav
    prompts_dir: Path | None = None            # built prompts; default data_dir/prompts
    studio_prompts_dir: Path | None = None     # recorded studio files <id>.wav, used before synthesised ones
    prompt_voice_rate: int = Field(175, ge=80, le=450)   # espeak-ng words per minute for synthesised prompts
    service_number: str = "12319"
    trunk_host: str = ""                       # the operator's SIP trunk ("" = no trunk section)
    trunk_username: str = ""
    trunk_password: str = ""
    agent_extensions: list[str] = ["1001", "1002", "1003", "1004"]
    agent_sip_secret: str = "change-me"        # per-extension SIP passwords are derived from it
    city_queue: str = "city"
    queue_max_wait_seconds: int = Field(300, ge=10)   # then the leave-a-message path
    queue_wrapup_seconds: int = Field(15, ge=0)
    queue_announce_seconds: int = Field(60, ge=0)     # position / hold-time announcements
    # IVR: district choice by key (ordered district codes; [] = no district menu)
    ivr_district_menu: list[str] = []
    ivr_menu_timeout_seconds: float = Field(5.0, gt=0)
    # when agents take calls (local time); outside, callers are offered the message path. None = always
    agent_hours_start: time | None = None
    agent_hours_end: time | None = None
    # satisfaction callbacks: "call" (Originate → AGI survey) or "sms"
    survey_channel: str = Field("call", pattern="^(call|sms)$")
    survey_call_attempts: int = Field(3, ge=1, le=10)
    survey_ring_seconds: int = Field(30, ge=5, le=120)
    survey_max_concurrent_calls: int = Field(4, ge=1, le=500)   # the outbound lines the trunk gives callbacks
    survey_dial: str = "PJSIP/{number}@trunk"  # how a citizen's number is dialled out

    # SMS: the connector to the operator / aggregator (SMPP 3.4 first)
    sms_connector: str = Field("smpp", pattern="^(smpp)$")
    smpp_host: str = "127.0.0.1"
    smpp_port: int = Field(2775, ge=1, le=65535)
    smpp_system_id: str = Field("hotline", max_length=15)
    smpp_password: str = Field("secret", max_length=8)         # SMPP 3.4 allows 8 characters
    smpp_system_type: str = Field("", max_length=12)
    sms_source_addr: str = "12319"             # the service number texts come from and go to
    smpp_window: int = Field(10, ge=1, le=1000)                # submit_sm outstanding at once
    smpp_rate_per_second: float = Field(100.0, ge=0)           # per connection; 0 = no cap
    smpp_enquire_link_seconds: float = Field(30.0, gt=0)
    smpp_reconnect_max_seconds: float = Field(30.0, gt=0)
    # non-urgent texts wait out the quiet hours (local time)
    sms_quiet_start: time = time(21, 0)
    sms_quiet_end: time = time(8, 0)
    # a burst from one number becomes one work item
    sms_flood_window_seconds: int = Field(600, ge=1)
    sms_templates_dir: Path | None = None      # replaces the packaged sms/templates

    # the browser pages: sessions and sign-in
    session_idle_minutes: int = Field(30, ge=1, le=24 * 60)    # signed out after this long without a request
    signin_max_failures: int = Field(5, ge=1, le=100)          # wrong passwords in a row, then a lock
    signin_lock_minutes: int = Field(15, ge=1, le=24 * 60)
    signin_delay_seconds: float = Field(0.5, ge=0, le=10)     # the answer to a failure waits this, doubling each time
    signin_client_max_failures: int = Field(30, ge=1, le=10000)  # failures from one address (any account), then a lock
    # 小休 reasons an agent picks from (shown in this order; reports group by them)
    pause_reasons: list[str] = ["用餐", "培训", "会议", "洗手间", "休息"]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("only sqlite:///PATH and postgresql+psycopg://… URLs are supported")
        return value

    @model_validator(mode="after")
    def _derive_defaults(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'hotline.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'celery-broker.db'}"
        if self.prompts_dir is None:
            self.prompts_dir = self.data_dir / "prompts"
        if not self.agi_public_host:
            self.agi_public_host = self.agi_host
        for ext in self.agent_extensions:
            if not re.fullmatch(r"\d{3,8}", ext):
                raise ValueError(f"agent extension {ext!r} must be 3 to 8 digits")
        for code in self.ivr_district_menu:
            if not re.fullmatch(r"\d{6}", code):
                raise ValueError(f"ivr_district_menu entry {code!r} must be a 6-digit district code")
        if (self.agent_hours_start is None) != (self.agent_hours_end is None):
            raise ValueError("agent_hours_start and agent_hours_end: set both or neither")
        for net in self.agi_permit:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"agi_permit entry {net!r} is not an address or network (e.g. 10.0.0.5/32)") from None
        if "{number}" not in self.survey_dial:
            raise ValueError("survey_dial must contain {number}")
        if self.callback_hours_end <= self.callback_hours_start:
            raise ValueError("callback_hours_end must be later than callback_hours_start")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build and validate settings; raise SettingsError with a readable message."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | {"HOTLINE_CONFIG"}
    unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(unknown)}: a typo? Known settings: {', '.join(sorted(known))}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"{ENV_PREFIX}{name.upper()}" if err["loc"] else name
            lines.append(f"{env} (`{name}` in the TOML file): {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
