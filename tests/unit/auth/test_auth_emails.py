"""Emails: one canonical form for accounts, and lookups that never fail loudly."""

from __future__ import annotations

import pytest

from apex_auth.model import lookup_email, normalise_email
from apex_contracts import InvalidInput


def test_emails_are_lowercased_and_normalised() -> None:
    assert normalise_email("  Ann.Lee@Example.COM ") == "ann.lee@example.com"


@pytest.mark.parametrize("raw", ["not-an-email", "a@", "@b.com", "a" * 300 + "@example.com"])
def test_malformed_emails_are_refused_at_registration(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_email(raw)


def test_lookups_accept_anything_and_match_the_canonical_form() -> None:
    assert lookup_email("Ann.Lee@Example.COM") == normalise_email("ann.lee@example.com")
    assert lookup_email("not-an-email") == "not-an-email"
