"""Distribution of artifacts (mail, outbox, drop folder), recorded in ``ops.delivery_ledger``."""

from xinfang.delivery.ledger import (
    ArtifactChangedError,
    DeliveryInProgressError,
    ensure_ledger,
)
from xinfang.delivery.mail import (
    DeliveryError,
    DeliveryReport,
    RetryPolicy,
    deliver_report,
)
from xinfang.delivery.recipients import (
    Recipient,
    RecipientsFileError,
    load_recipients,
)

__all__ = [
    "ArtifactChangedError",
    "DeliveryError",
    "DeliveryInProgressError",
    "DeliveryReport",
    "Recipient",
    "RecipientsFileError",
    "RetryPolicy",
    "deliver_report",
    "ensure_ledger",
    "load_recipients",
]
