"""Webhooks: signing, delivery, the outbox."""
