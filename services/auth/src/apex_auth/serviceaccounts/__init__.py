"""Tenants' service accounts: principals with their own ``user_id`` whose credential is a
NATS user (a ``.creds`` file) bound to the bus API of that principal (``store``: create,
list, revoke; ``settings``: what issuing them needs). See docs/bus-api.md."""
