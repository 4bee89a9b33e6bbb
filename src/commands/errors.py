"""Domain errors: each is a refusal a client can act on."""

from __future__ import annotations


class DomainError(Exception):
    """A command the domain refuses."""


class InvalidTransition(DomainError):
    """The order's state does not allow this command (HTTP 409)."""


class LimitExceeded(DomainError):
    """The command would take the order past a limit: SKUs per order, quantity of one SKU, or a
    total that could no longer be paid (HTTP 422)."""


class OrderNotFound(DomainError):
    """No order with that id (HTTP 404)."""


class ItemNotFound(DomainError):
    """The order has no line with that SKU (HTTP 404)."""


class VersionMismatch(DomainError):
    """If-Match named a version the order has moved past (HTTP 412)."""


class BelowReserved(InvalidTransition):
    """An adjustment would leave fewer units on hand than are reserved (HTTP 409)."""


class InsufficientStock(DomainError):
    """A reservation asks for more units than are available (HTTP 409); `short` names each SKU that
    is short, with the units asked for and the units available."""

    def __init__(self, message: str, short: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__(message)
        self.short = short or {}

    @classmethod
    def of(cls, short: dict[str, tuple[int, int]]) -> InsufficientStock:
        """The refusal naming each short SKU: `{sku: (asked, available)}`."""
        named = ", ".join(f"{sku} (asked {asked}, available {available})" for sku, (asked, available) in short.items())
        return cls(f"not enough stock: {named}", short)


class SkuNotFound(DomainError):
    """No stock was ever received for that SKU: it is untracked (HTTP 404)."""
