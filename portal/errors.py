"""Domain exceptions. Views and the CLI turn these into messages; the domain never returns error tuples."""


class DomainError(Exception):
    """Base for errors whose message is safe to show to the person who caused them."""


class InvalidInput(DomainError):
    """A value given by a person or a client is malformed or out of range; `field` names it if known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidAmount(InvalidInput):
    """A money amount is malformed, negative where it must not be, or too precise.

    `typed` is the text as given and `too_precise` says which of the two went wrong, when known, so
    a page can say it in its own words and language.
    """

    def __init__(self, message: str, field: str | None = None, *, typed: str | None = None,
                 too_precise: bool = False):
        super().__init__(message, field)
        self.typed, self.too_precise = typed, too_precise


class NotFound(DomainError):
    """A named thing does not exist."""


class UnknownUser(NotFound):
    pass


class UnknownUpstream(NotFound):
    pass


class UnknownModel(NotFound):
    pass


class AlreadyExists(DomainError):
    """Creating something that must be unique, and it is already there."""


class InsufficientFunds(DomainError):
    """The available balance (balance minus holds) does not cover the amount."""

    def __init__(self, needed: int, available: int | None = None):
        self.needed = needed
        self.available = available
        super().__init__(f"available balance does not cover {needed} micro-USD")


class CreditsExpired(InsufficientFunds):
    """The account's credits passed their expiry date (12 months after the last top-up)."""

    def __init__(self, needed: int, available: int | None, expired_at):
        super().__init__(needed, available)
        self.expired_at = expired_at
        self.args = (f"your credits expired on {expired_at:%Y-%m-%d}",)


class HoldNotOpen(DomainError):
    """The hold was already settled or released (or never existed)."""


class ReferenceConflict(DomainError):
    """An idempotency reference was reused for a different operation."""


class KeyRejected(DomainError):
    """An API key cannot be used; the subclass says why."""


class UnknownKey(KeyRejected):
    pass


class KeyRevoked(KeyRejected):
    pass


class KeyExpired(KeyRejected):
    pass


class AccountNotVerified(KeyRejected):
    pass


class AccountSuspended(KeyRejected):
    pass


class SpendCapReached(DomainError):
    """The key's total or monthly spend cap does not leave room for this call."""
