"""Domain errors: each is a refusal a client can act on."""


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
