"""Feeding read models from the event log: deliveries, the facts derived from events,
and the runner that pulls a durable consumer into a projection."""
