"""Typed SQLAlchemy models.

Money columns are BigInteger micro-dollars (1 USD = 1,000,000); prices are micro-dollars per
million tokens. Rows that record history (ledger entries, prices, usage records) are only ever
inserted; the ledger's append-only rule is also enforced by database triggers (see migrations).
"""
from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from typing import Optional

from sqlalchemy import JSON, BigInteger, CheckConstraint, Date, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

from .extensions import db
from .secretbox import EncryptedText


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class UserStatus(str, enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Protocol(str, enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    ECHO = "echo"


class EntryKind(str, enum.Enum):
    GRANT = "grant"
    TOPUP = "topup"
    CHARGE = "charge"
    REFUND = "refund"
    EXPIRY = "expiry"
    ADJUSTMENT = "adjustment"
    DISPUTE = "dispute"  # a payment the payer's bank took back; debited whatever the balance


class HoldStatus(str, enum.Enum):
    OPEN = "open"
    SETTLED = "settled"
    RELEASED = "released"


def _enum_check(column: str, members: type[enum.Enum]) -> CheckConstraint:
    values = ", ".join(f"'{m.value}'" for m in members)
    return CheckConstraint(f"{column} IN ({values})", name=f"{column}_valid")


class User(db.Model):
    __tablename__ = "user_account"
    __table_args__ = (_enum_check("status", UserStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    email_normalized: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    is_verified: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE.value)
    status_reason: Mapped[Optional[str]] = mapped_column(Text)
    status_changed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped on password change, 2FA change or logout-everywhere: sessions carrying an older
    # value are no longer valid.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    totp_secret: Mapped[Optional[str]] = mapped_column(String(64))
    totp_enabled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The TOTP time step (unix time // 30) of the last code accepted: a code works once, and
    # never after a later one (RFC 6238, section 5.2).
    totp_last_step: Mapped[Optional[int]] = mapped_column()
    # When the closed-account retention job cleared this person's data (retention.py).
    personal_data_erased_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The language the person chose in the footer ("en", "zh"); None follows the browser's.
    locale: Mapped[Optional[str]] = mapped_column(String(16))

    account: Mapped["Account"] = relationship(back_populates="user", uselist=False)

    # Flask-Login protocol. "Active" there means "may log in": a suspended person still may, to a
    # read-only portal (views/readonly.py); a terminated account may not.
    @property
    def is_active(self) -> bool:
        return self.status != UserStatus.TERMINATED.value

    @property
    def is_suspended(self) -> bool:
        return self.status == UserStatus.SUSPENDED.value

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        # The epoch makes older sessions invalid after a password or 2FA change.
        return f"{self.id}:{self.session_epoch}"


class Account(db.Model):
    """A user's credit: `balance` caches the sum of its ledger entries, `held` its open holds."""

    __tablename__ = "account"
    __table_args__ = (CheckConstraint("held >= 0", name="held_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), unique=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    last_topup_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Last top-up + 12 calendar months (see expiry.py); None until the first paid top-up.
    credits_expire_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The hash of the account's newest ledger entry: the head of its chain (see ledger.py).
    chain_head: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Low-balance mail: sent once when the available balance first falls below the threshold;
    # a top-up re-arms it.
    low_balance_threshold: Mapped[int] = mapped_column(BigInteger, default=1_000_000, server_default="1000000")
    low_balance_armed: Mapped[bool] = mapped_column(default=True)
    # Automatic top-up (autotopup.py): the card saved at a Checkout top-up, charged off-session
    # when the available balance falls below the threshold, at most hourly, within a monthly ceiling.
    stripe_customer_id: Mapped[Optional[str]] = mapped_column(String(255))
    auto_topup_payment_method: Mapped[Optional[str]] = mapped_column(String(255))  # pm_...
    auto_topup_card: Mapped[Optional[str]] = mapped_column(String(64))  # "visa •••• 4242", for display
    auto_topup_enabled: Mapped[bool] = mapped_column(default=False)
    auto_topup_threshold: Mapped[int] = mapped_column(BigInteger, default=5_000_000, server_default="5000000")
    auto_topup_amount: Mapped[int] = mapped_column(BigInteger, default=20_000_000, server_default="20000000")
    auto_topup_monthly_limit: Mapped[int] = mapped_column(BigInteger, default=100_000_000,
                                                          server_default="100000000")
    auto_topup_last_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The operator's limits for this account (portal/apilimits.py): None the configured default;
    # per minute 0 means no limit.
    rpm_limit: Mapped[Optional[int]] = mapped_column()
    tpm_limit: Mapped[Optional[int]] = mapped_column(BigInteger)
    concurrency_limit: Mapped[Optional[int]] = mapped_column()

    user: Mapped[User] = relationship(back_populates="account")

    @property
    def available(self) -> int:
        return self.balance - self.held


class ApiKey(db.Model):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[Optional[str]] = mapped_column(String(45))
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Limits, each optional. Spend is tracked on the key so a cap is enforced by the same kind of
    # conditional update as the balance: in-flight holds count against it.
    allowed_models: Mapped[Optional[str]] = mapped_column(Text)  # JSON list of public model ids
    ip_allowlist: Mapped[Optional[str]] = mapped_column(Text)    # CIDRs, one per line
    spend_cap_total: Mapped[Optional[int]] = mapped_column(BigInteger)
    spend_cap_monthly: Mapped[Optional[int]] = mapped_column(BigInteger)
    spent_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    spent_month: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    spent_month_key: Mapped[str] = mapped_column(String(7), default="", server_default="")  # "2026-11"
    held: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Calls this key may have in flight at once; None: the operator's default.
    max_concurrency: Mapped[Optional[int]] = mapped_column()
    # The operator's limits for this key (None: the configured default; per minute 0 means no
    # limit), and the owner's own lower ones per minute (None: the operator's); apilimits.py.
    rpm_limit: Mapped[Optional[int]] = mapped_column()
    tpm_limit: Mapped[Optional[int]] = mapped_column(BigInteger)
    concurrency_limit: Mapped[Optional[int]] = mapped_column()
    max_rpm: Mapped[Optional[int]] = mapped_column()
    max_tpm: Mapped[Optional[int]] = mapped_column(BigInteger)
    # Key sharing (signals.py): when the key was first seen from more client addresses in one UTC
    # day than KEY_SHARING_ADDRESSES_PER_DAY, and how many; its owner is mailed once, then.
    sharing_flagged_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    sharing_addresses: Mapped[Optional[int]] = mapped_column()
    # When the operator last cleared that flag as a false positive (signals.clear): that UTC day,
    # only addresses first seen after it count towards flagging the key again.
    sharing_cleared_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class RateCounter(db.Model):
    """One fixed-window counter of portal/ratelimit.py, kept here when several processes share
    them without Redis. `expires` is wall-clock milliseconds: processes share no other clock."""

    __tablename__ = "rate_counter"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(BigInteger)


class Upstream(db.Model):
    __tablename__ = "upstream"
    __table_args__ = (_enum_check("protocol", Protocol),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    protocol: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[Optional[str]] = mapped_column(String(500))
    # Encrypted at rest (portal.secretbox); the application sees plaintext, never shown or logged.
    api_key: Mapped[Optional[str]] = mapped_column(EncryptedText)
    # Disabled: its models answer as unavailable until it is enabled again.
    enabled: Mapped[bool] = mapped_column(default=True, server_default="1")
    # The operator allowed this upstream's host to resolve to a private, loopback or link-local
    # address (portal.egress); otherwise such addresses are refused, at saving and at each call.
    allow_private_host: Mapped[bool] = mapped_column(default=False, server_default="0")
    # How the upstream reports usage (proxy.metering.DIALECTS): set by the operator or guessed
    # from the base URL's host.
    dialect: Mapped[str] = mapped_column(String(32), default="generic-openai", server_default="generic-openai")
    # An OpenAI-compatible upstream without the Responses API (its dialect may say so too:
    # proxy.dialects.CHAT_ONLY): /v1/responses calls reach it translated to chat completions.
    chat_only: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:  # never show the credential
        return f"<Upstream {self.name} {self.protocol}>"


class CatalogModel(db.Model):
    __tablename__ = "model"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(128), unique=True)
    upstream_id: Mapped[int] = mapped_column(ForeignKey("upstream.id"))
    upstream_model: Mapped[str] = mapped_column(String(128))
    max_output_tokens: Mapped[int] = mapped_column(default=4096)
    # Input tokens the model accepts in all: what a request whose input is not in its body (a
    # previous response, a file id, an image URL, a server tool's results) is held at.
    context_window: Mapped[Optional[int]] = mapped_column(BigInteger)
    # Such requests are held at the context window ("hold") or refused ("refuse").
    input_by_reference: Mapped[str] = mapped_column(String(16), default="hold", server_default="hold")
    # A requested service tier the model has no prices for is refused ("refuse") or left out of
    # the request ("strip").
    unpriced_tier: Mapped[str] = mapped_column(String(16), default="refuse", server_default="refuse")
    # Server tool uses one call may be held for when the request sets no limit (None: TOOL_CALLS_CEILING).
    tool_calls_ceiling: Mapped[Optional[int]] = mapped_column()
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the operator pays upstream, in the price file's shape (decimal strings of USD):
    # {"usd_per_million": {"input": "2.5", ...}, ...}; None: not known. Feeds usage_record.upstream_cost.
    cost_price: Mapped[Optional[dict]] = mapped_column(JSON)

    upstream: Mapped[Upstream] = relationship()


class ModelRoute(db.Model):
    """One upstream that may serve a public model (portal/routes.py, proxy/routing.py): the lowest
    priority number is tried first, by weight among equals. The model's own upstream is one of them."""

    __tablename__ = "model_route"
    __table_args__ = (
        Index("ix_model_route_model_upstream", "model_id", "upstream_id", unique=True),
        CheckConstraint("weight > 0 AND priority >= 0", name="model_route_weight_priority"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    upstream_id: Mapped[int] = mapped_column(ForeignKey("upstream.id"))
    upstream_model: Mapped[str] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(default=1, server_default="1")
    weight: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    upstream: Mapped[Upstream] = relationship()


class ModelPrice(db.Model):
    """One price of a model from `effective_at` on; a change inserts a new row."""

    __tablename__ = "model_price"
    __table_args__ = (
        Index("ix_model_price_current", "model_id", "effective_at"),
        CheckConstraint(
            "input >= 0 AND output >= 0 AND (cache_read IS NULL OR cache_read >= 0)"
            " AND (cache_write_5m IS NULL OR cache_write_5m >= 0)",
            name="prices_not_negative",
        ),
        CheckConstraint(
            "(cache_write_1h IS NULL OR cache_write_1h >= 0) AND (input_audio IS NULL OR input_audio >= 0)"
            " AND (output_audio IS NULL OR output_audio >= 0) AND (reasoning IS NULL OR reasoning >= 0)"
            " AND (long_context_above IS NULL OR long_context_above > 0)",
            name="class_prices_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    input: Mapped[int] = mapped_column(BigInteger)
    output: Mapped[int] = mapped_column(BigInteger)
    cache_read: Mapped[Optional[int]] = mapped_column(BigInteger)
    cache_write_5m: Mapped[Optional[int]] = mapped_column(BigInteger)
    cache_write_1h: Mapped[Optional[int]] = mapped_column(BigInteger)
    input_audio: Mapped[Optional[int]] = mapped_column(BigInteger)
    output_audio: Mapped[Optional[int]] = mapped_column(BigInteger)
    reasoning: Mapped[Optional[int]] = mapped_column(BigInteger)
    # Integers only in these (micro-dollars per thousand units / per million tokens; JSON keeps
    # integers exact): {"web_search": 10000000}, {"input": 6000000, ...}, {"priority": {...}}.
    fees: Mapped[Optional[dict]] = mapped_column(JSON)
    long_context_above: Mapped[Optional[int]] = mapped_column(BigInteger)
    long_context: Mapped[Optional[dict]] = mapped_column(JSON)
    service_tiers: Mapped[Optional[dict]] = mapped_column(JSON)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A future change withdrawn before it took effect: kept for the record, never in force.
    withdrawn_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class LedgerEntry(db.Model):
    """An immutable change of an account's balance; the sum of an account's entries is its balance."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        _enum_check("kind", EntryKind),
        Index("ix_ledger_entry_account", "account_id", "id"),
        Index("ix_ledger_entry_kind_time", "kind", "created_at"),  # refunds and disputes per day
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[Optional[str]] = mapped_column(String(255), unique=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    hold_id: Mapped[Optional[int]] = mapped_column(ForeignKey("hold.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # sha256 of this entry's content and the previous entry's hash (ledger.chain_hash).
    entry_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")


class Hold(db.Model):
    """Money reserved for an in-flight call; open until settled into a charge or released."""

    __tablename__ = "hold"
    __table_args__ = (
        _enum_check("status", HoldStatus),
        CheckConstraint("amount >= 0", name="hold_amount_not_negative"),
        Index("ix_hold_open", "account_id", "status"),
        # The console's open holds, oldest first (dashboards.py).
        Index("ix_hold_open_age", "created_at", sqlite_where=text("status = 'open'"),
              postgresql_where=text("status = 'open'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.OPEN.value)
    memo: Mapped[str] = mapped_column(Text, default="")
    # The key whose spend caps the hold also counts against, so a stale hold can be undone whole.
    api_key_id: Mapped[Optional[int]] = mapped_column(ForeignKey("api_key.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # What the call was (model, upstream and price ids, route, streamed), written with the hold at
    # no extra query: a hold its process never settled becomes an `abandoned` usage record.
    call_details: Mapped[Optional[dict]] = mapped_column(JSON)


class UsageRecord(db.Model):
    """One proxied call: who, what, how many tokens of each class, the price paid, the outcome."""

    __tablename__ = "usage_record"
    __table_args__ = (
        Index("ix_usage_account_time", "account_id", "started_at"),
        # A day's calls, for the dashboards' rollups and today's live figures (dashboards.py).
        Index("ix_usage_started", "started_at"),
        # Records whose client address is still kept: what the IP retention job erases (retention.py).
        Index("ix_usage_ip_kept", "started_at", sqlite_where=text("client_ip IS NOT NULL"),
              postgresql_where=text("client_ip IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    upstream_id: Mapped[int] = mapped_column(ForeignKey("upstream.id"))
    price_id: Mapped[int] = mapped_column(ForeignKey("model_price.id"))
    hold_id: Mapped[Optional[int]] = mapped_column(ForeignKey("hold.id"))
    hold_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    route: Mapped[str] = mapped_column(String(32), default="")
    streamed: Mapped[bool] = mapped_column(default=False)
    ledger_entry_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ledger_entry.id"))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_5m_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    input_audio_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_audio_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    units: Mapped[Optional[dict]] = mapped_column(JSON)          # fee units: {"web_search": 3}
    service_tier: Mapped[Optional[str]] = mapped_column(String(32))  # as the upstream reported it
    long_context: Mapped[bool] = mapped_column(default=False, server_default="0")
    # For the operator: unpriced classes, units or tiers, and how the meter read the usage.
    flags: Mapped[Optional[list]] = mapped_column(JSON)
    cost: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the call cost the operator upstream (the model's cost price, same usage, same rule);
    # None when the model had no cost price. The margin dashboard reads it.
    upstream_cost: Mapped[Optional[int]] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    usage_estimated: Mapped[bool] = mapped_column(default=False)
    # The upstream reported more than the request allowed; the record holds what was charged.
    usage_clamped: Mapped[bool] = mapped_column(default=False, server_default="0")
    http_status: Mapped[Optional[int]] = mapped_column()
    error: Mapped[Optional[str]] = mapped_column(Text)
    client_ip: Mapped[Optional[str]] = mapped_column(String(45))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_byte_ms: Mapped[Optional[int]] = mapped_column()
    duration_ms: Mapped[Optional[int]] = mapped_column()
    # Each upstream tried, in order: [{"upstream": name, "result": "ok" | "status_503" | ..., "ms": 12}];
    # None for calls from before failover. `upstream_id` is the one that served (or was tried last).
    attempts: Mapped[Optional[list]] = mapped_column(JSON)


class LegalKind(str, enum.Enum):
    TERMS = "terms"
    PRIVACY = "privacy"
    REFUND_POLICY = "refunds"


class LegalDocument(db.Model):
    """A published version of the terms or the privacy policy; never edited, only superseded.

    The English row is the version (what people accept and what takes effect); a row in another
    `lang` is its translation, with the same kind and version (legal.py)."""

    __tablename__ = "legal_document"
    __table_args__ = (
        _enum_check("kind", LegalKind),
        db.UniqueConstraint("kind", "version", "lang", name="uq_legal_document_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(40))
    lang: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    body: Mapped[str] = mapped_column(Text)
    significant: Mapped[bool] = mapped_column(default=False)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A significant change may take effect later than its publication (notice in advance);
    # None: at publication (see legal.py).
    effective_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    @property
    def takes_effect(self) -> datetime:
        return self.effective_at or self.published_at

    @property
    def is_upcoming(self) -> bool:
        """Published, but not in force yet."""
        return self.takes_effect > utcnow()


class TermsAcceptance(db.Model):
    __tablename__ = "terms_acceptance"
    __table_args__ = (Index("ix_terms_acceptance_document", "document_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("legal_document.id"))
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[Optional[str]] = mapped_column(String(45))

    document: Mapped[LegalDocument] = relationship()


class LegalDecline(db.Model):
    """A person declined a version at the consent page (which also asks for their refund)."""

    __tablename__ = "legal_decline"
    __table_args__ = (db.UniqueConstraint("user_id", "document_id", name="uq_legal_decline_user_document"),
                      Index("ix_legal_decline_document", "document_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    document_id: Mapped[int] = mapped_column(ForeignKey("legal_document.id"))
    declined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[Optional[str]] = mapped_column(String(45))
    reason: Mapped[Optional[str]] = mapped_column(Text)


class TokenPurpose(str, enum.Enum):
    VERIFY = "verify"
    RESET = "reset"
    CHANGE_EMAIL = "change_email"


class EmailToken(db.Model):
    """A single-use, expiring link token; only its SHA-256 is stored."""

    __tablename__ = "email_token"
    __table_args__ = (_enum_check("purpose", TokenPurpose),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    new_email: Mapped[Optional[str]] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class RecoveryCode(db.Model):
    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class UserSession(db.Model):
    """A logged-in browser session. The signed cookie carries a random id; only its SHA-256 is stored.

    A signed cookie cannot be taken back once issued, so logging out ends this row instead, and a
    copy of the cookie then logs no one in.
    """

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class RefundStatus(str, enum.Enum):
    REQUESTED = "requested"  # open: the operator has not acted on it yet
    CANCELLED = "cancelled"  # the user accepted the terms after all
    PAID = "paid"
    REFUSED = "refused"


_OPEN_REFUND = text("status = 'requested'")


class RefundRequest(db.Model):
    """A user's request for their unused balance back; the payout itself is the operator's to make."""

    __tablename__ = "refund_request"
    __table_args__ = (
        _enum_check("status", RefundStatus),
        # One open request per account: declining twice, or closing after declining, finds the first.
        Index("uq_refund_request_open", "user_id", unique=True,
              sqlite_where=_OPEN_REFUND, postgresql_where=_OPEN_REFUND),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    # Where to reach the person, as it was when they asked: closing the account anonymises
    # the account's own address.
    contact_email: Mapped[str] = mapped_column(String(254))
    reason: Mapped[str] = mapped_column(Text, default="")
    balance_at_request: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.REQUESTED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The person asked to leave (closing, or declining new terms and choosing to go): approval
    # closes the account once the money is back.
    close_account: Mapped[bool] = mapped_column(default=False)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)  # what approval paid back, in all
    decision_reason: Mapped[Optional[str]] = mapped_column(Text)


class PaymentStatus(str, enum.Enum):
    PENDING = "pending"    # Checkout Session created, not paid (yet)
    PAID = "paid"          # credited
    FAILED = "failed"      # an asynchronous method failed, or the session expired unpaid


class PaymentSource(str, enum.Enum):
    STRIPE = "stripe"
    MANUAL = "manual"      # bank transfer, cash: `credits topup`, paid back by hand


class Payment(db.Model):
    """Money a person paid (or is paying) in: a Stripe Checkout Session or a manual top-up.

    `refunded` and `disputed` are what has gone back, in micro-USD; the ledger holds the matching
    debits, each referenced by the Stripe object that caused it.
    """

    __tablename__ = "payment"
    __table_args__ = (
        _enum_check("status", PaymentStatus),
        _enum_check("source", PaymentSource),
        CheckConstraint("amount > 0 AND refunded >= 0 AND disputed >= 0", name="payment_amounts_valid"),
        Index("ix_payment_account", "account_id", "id"),
        Index("ix_payment_paid", "status", "paid_at"),  # top-ups per day
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.PENDING.value)
    amount: Mapped[int] = mapped_column(BigInteger)  # micro-USD
    checkout_session_id: Mapped[Optional[str]] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[Optional[str]] = mapped_column(String(255), unique=True)
    charge_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    reference: Mapped[Optional[str]] = mapped_column(String(255), unique=True)  # manual: the operator's
    method: Mapped[Optional[str]] = mapped_column(String(32))  # card, alipay, wechat_pay, bank transfer...
    receipt_url: Mapped[Optional[str]] = mapped_column(Text)
    invoice_url: Mapped[Optional[str]] = mapped_column(Text)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    disputed: Mapped[int] = mapped_column(BigInteger, default=0)
    dispute_status: Mapped[Optional[str]] = mapped_column(String(32))
    failure: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # An off-session charge of the saved card (autotopup.py), not a Checkout Session.
    auto_topup: Mapped[bool] = mapped_column(default=False)
    # Stripe's fingerprint of the card paid with (the same card has the same one on every account):
    # accounts sharing a card are shown together in the console's signals (signals.py).
    card_fingerprint: Mapped[Optional[str]] = mapped_column(String(64), index=True)

    @property
    def unreturned(self) -> int:
        """What of this payment has not gone back (by refund or dispute)."""
        return max(self.amount - self.refunded - self.disputed, 0)


class StripeEvent(db.Model):
    """A webhook event, recorded under its id in the same transaction as its effect: once only."""

    __tablename__ = "stripe_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("account.id"), index=True)
    # What the handler did with it, in a line the operator can read.
    outcome: Mapped[str] = mapped_column(Text, default="")
    # The operator should look at it (a dispute, an event for an unknown session...).
    flagged: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefundPayout(db.Model):
    """One payment's share of an approved refund: refunded through Stripe, or owed by hand."""

    __tablename__ = "refund_payout"

    id: Mapped[int] = mapped_column(primary_key=True)
    refund_request_id: Mapped[int] = mapped_column(ForeignKey("refund_request.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    stripe_refund_id: Mapped[Optional[str]] = mapped_column(String(255), unique=True)
    by_hand: Mapped[bool] = mapped_column(default=False)  # a manual top-up's share: the operator pays it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GiftCode(db.Model):
    """A code worth `amount`, redeemable once; only its SHA-256 is stored."""

    __tablename__ = "gift_code"
    __table_args__ = (CheckConstraint("amount > 0", name="gift_code_amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the last characters, to tell codes apart
    amount: Mapped[int] = mapped_column(BigInteger)
    counts_as_topup: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    redeemed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    redeemed_by: Mapped[Optional[int]] = mapped_column(ForeignKey("account.id"))


class Notice(db.Model):
    """A mail that must go out once (an expiry warning...): its key is unique, so a rerun finds it."""

    __tablename__ = "notice"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeyAddress(db.Model):
    """A client address one key was used from on one UTC day (signals.py); erased after IP_RETENTION_DAYS."""

    __tablename__ = "key_address"
    __table_args__ = (Index("uq_key_address", "api_key_id", "day", "ip", unique=True),
                      Index("ix_key_address_ip", "ip", "day"),
                      Index("ix_key_address_day", "day"))

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"))
    day: Mapped[date] = mapped_column(Date)
    ip: Mapped[str] = mapped_column(String(45))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownAddress(db.Model):
    """A network (IPv4 /24, IPv6 /64) a person signed in from (security_notices.py).

    A sign-in from a network not listed mails a notice. The network is erased (set to NULL) after
    IP_RETENTION_DAYS without a sign-in from it; the row stays, saying the person signed in before.
    """

    __tablename__ = "known_address"
    __table_args__ = (Index("uq_known_address", "user_id", "network", unique=True),
                      Index("ix_known_address_last_seen", "last_seen_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    network: Mapped[Optional[str]] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRun(db.Model):
    """When a periodic job last started: claimed by a conditional update, so one process runs it."""

    __tablename__ = "job_run"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class ContactCategory(str, enum.Enum):
    QUESTION = "question"
    BILLING = "billing"
    ABUSE = "abuse"


class ContactMessage(db.Model):
    """A message from the contact form; open until the operator marks it handled (inbox.py)."""

    __tablename__ = "contact_message"
    __table_args__ = (_enum_check("category", ContactCategory),
                      Index("ix_contact_message_queue", "handled_at", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user_account.id"))
    email: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    ip: Mapped[Optional[str]] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    category: Mapped[str] = mapped_column(String(16), default=ContactCategory.QUESTION.value,
                                          server_default=ContactCategory.QUESTION.value)
    # An abuse report's key hint ("tg_…abcd") or request id ("req_..."); never a whole key.
    reference: Mapped[Optional[str]] = mapped_column(String(64))
    # The key the report names exactly (a pasted whole key, or the request id's key), if any.
    api_key_id: Mapped[Optional[int]] = mapped_column(ForeignKey("api_key.id"))
    handled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    handled_by: Mapped[Optional[str]] = mapped_column(String(254))


class ContactReply(db.Model):
    """The operator's answer to a contact message, mailed to its sender and kept in the thread."""

    __tablename__ = "contact_reply"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("contact_message.id"), index=True)
    author_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user_account.id"))  # None: the CLI
    author: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Audience(str, enum.Enum):
    ALL = "all"        # every verified account that is not closed
    ACTIVE = "active"  # active, verified, and a call or a top-up in the last 90 days


class Announcement(db.Model):
    """A mail to many users, sent in the background (announcements.py): its recipients are rows.

    `worker` and `lease_until` say which process is sending it: one at a time, so the throttle
    holds across processes; a process that stops lets its lease run out and another goes on.
    """

    __tablename__ = "announcement"
    __table_args__ = (_enum_check("audience", Audience),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recipients: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    worker: Mapped[Optional[str]] = mapped_column(String(64))
    lease_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class AnnouncementRecipient(db.Model):
    """One person an announcement goes to; `sent_at` is set (a conditional UPDATE) before the mail goes."""

    __tablename__ = "announcement_recipient"
    __table_args__ = (Index("uq_announcement_recipient", "announcement_id", "user_id", unique=True),
                      Index("ix_announcement_recipient_due", "announcement_id", "sent_at", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    announcement_id: Mapped[int] = mapped_column(ForeignKey("announcement.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    skipped: Mapped[bool] = mapped_column(default=False)  # closed since: no address to mail


class SiteSetting(db.Model):
    """An operator setting changed in the console (branding, maintenance); it overrides the configuration."""

    __tablename__ = "site_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Incident(db.Model):
    """An incident the operator wrote for the public status page; ongoing until `resolved_at`."""

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_started", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The status page's recent windows per model (status.py); declared here, outside UsageRecord,
# so the class itself stays as it is.
Index("ix_usage_model_time", UsageRecord.model_id, UsageRecord.started_at)


class AuditEntry(db.Model):
    """One operator action: who, what, when, from which address, and the target before and after.

    Append-only: database triggers refuse UPDATE and DELETE (migration 0010).
    """

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_target", "target_type", "target_id", "id"),
                      Index("ix_audit_entry_action", "action", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user_account.id"))  # None: the CLI
    actor: Mapped[str] = mapped_column(String(254))  # the admin's address then, or "cli:<login>"
    ip: Mapped[Optional[str]] = mapped_column(String(45))
    action: Mapped[str] = mapped_column(String(64))  # "user.suspend", "price.set", ...
    target_type: Mapped[str] = mapped_column(String(32), default="", server_default="")
    target_id: Mapped[str] = mapped_column(String(128), default="", server_default="")
    reason: Mapped[Optional[str]] = mapped_column(Text)
    before: Mapped[Optional[dict]] = mapped_column(JSON)
    after: Mapped[Optional[dict]] = mapped_column(JSON)


# -- the console's dashboards: daily rollups of usage (dashboards.py) -------------------------

class RollupDay(db.Model):
    """A UTC day whose usage is summed in the rollup tables below; days not listed are read live."""

    __tablename__ = "rollup_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rolled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageDay(db.Model):
    """One day's calls of one model on one upstream."""

    __tablename__ = "usage_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    upstream_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    model_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    spend: Mapped[int] = mapped_column(BigInteger)
    # The calls whose upstream cost is known, what they were charged, and that cost.
    costed_calls: Mapped[int] = mapped_column(BigInteger)
    costed_spend: Mapped[int] = mapped_column(BigInteger)
    upstream_cost: Mapped[int] = mapped_column(BigInteger)


class UsageAccountDay(db.Model):
    """One day's calls and spend of one account."""

    __tablename__ = "usage_account_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(BigInteger)
    spend: Mapped[int] = mapped_column(BigInteger)


class UsageLatencyDay(db.Model):
    """How many of a day's calls on an upstream took as long as one latency bucket (dashboards.BUCKETS_MS)."""

    __tablename__ = "usage_latency_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    upstream_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)  # "duration" or "first_byte"
    bucket: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(BigInteger)
