"""Webhooks: endpoints registered by operators, each matching event turned into a signed delivery
(Standard Webhooks) that an rq job POSTs, with retries, in version order per order and endpoint."""
