"""Users, roles, password hashing and API keys: who is acting, shared by every part."""
from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hotline.db import Base, utcnow


class Role(str, enum.Enum):
    agent = "agent"            # 坐席员
    dispatcher = "dispatcher"  # 派遣员
    district = "district"      # 区级平台
    supervisor = "supervisor"  # 班长 / 质检员
    admin = "admin"            # 管理员
    client = "client"          # an outside system through Open311: sees what it submitted


ROLE_LABELS = {Role.agent: "坐席员", Role.dispatcher: "派遣员", Role.district: "区级平台",
               Role.supervisor: "班长/质检员", Role.admin: "管理员", Role.client: "外部系统"}


class AccountError(ValueError):
    """A user or key operation cannot be done; the message says why."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    unit_code: Mapped[str | None] = mapped_column(String(32))  # district users: their handling unit
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A key for systems (Open311 clients, district systems); acts as its user."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256: keys are 256-bit random
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


@dataclass(frozen=True)
class Actor:
    """Who performs an action: a user, or the system itself."""

    role: str
    user_id: int | None = None
    username: str = "system"
    unit_code: str | None = None

    @property
    def label(self) -> str:
        return self.username

    @classmethod
    def of(cls, user: User) -> "Actor":
        return cls(role=user.role, user_id=user.id, username=user.username, unit_code=user.unit_code)


SYSTEM = Actor(role="system")

_hasher = PasswordHasher()
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(12)


def add_user(session: Session, username: str, role: str, password: str,
             display_name: str = "", unit_code: str | None = None) -> User:
    if role not in Role.__members__:
        raise AccountError(f"unknown role {role!r}; choose one of {', '.join(Role.__members__)}")
    if role == Role.district and not unit_code:
        raise AccountError("a district user needs --unit, the handling unit it belongs to")
    if session.scalar(select(User).where(User.username == username)):
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, role=role, password_hash=hash_password(password),
                display_name=display_name or username, unit_code=unit_code)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_api_key(session: Session, user: User, name: str) -> str:
    """Create a key for the user; the key itself is returned once and only its hash is kept."""
    key = "hk_" + secrets.token_urlsafe(32)
    session.add(ApiKey(user_id=user.id, name=name, key_hash=_key_hash(key)))
    session.flush()
    return key


def actor_for_api_key(session: Session, key: str) -> Actor | None:
    if not key or len(key) > 200:
        return None
    row = session.execute(
        select(User).join(ApiKey, ApiKey.user_id == User.id)
        .where(ApiKey.key_hash == _key_hash(key), ApiKey.revoked_at.is_(None), User.active.is_(True))
    ).scalar_one_or_none()
    return Actor.of(row) if row else None


def list_api_keys(session: Session, username: str | None = None) -> list[tuple[ApiKey, User]]:
    q = select(ApiKey, User).join(User, ApiKey.user_id == User.id).order_by(ApiKey.id)
    if username:
        q = q.where(User.username == username)
    return [(k, u) for k, u in session.execute(q).all()]


def revoke_api_key(session: Session, key_id: int) -> ApiKey:
    """Stop a key from working (within the API's key cache time, 30 s); kept for the record."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise AccountError(f"no api key #{key_id}; `hotline users api-key list` shows them")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def set_active(session: Session, username: str, active: bool) -> User:
    """Disable (or enable again) a user: a disabled user's keys and sign-ins stop working."""
    user = get_user(session, username)
    user.active = active
    return user
