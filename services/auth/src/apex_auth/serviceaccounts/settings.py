"""What issuing service accounts needs from configuration (the auth service's settings
inherit it): the issuer file and the system account's credentials, both written by
``apex up`` under ``.apex/nats-auth/`` and mounted from secrets in a deployment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from apex_runtime import ServiceSettings


class ServiceAccountSettings(ServiceSettings):
    service_accounts: bool = Field(
        default=True, description="tenants may create service accounts (NATS users of the bus API)"
    )
    nats_issuer_file: Path | None = Field(
        default=None,
        description="JSON with the APEX account's signing key, the operator key and the account's"
        " public key (apex up: .apex/nats-auth/issuer.json); unset: service accounts answer 503",
    )
    nats_system_creds: Path | None = Field(
        default=None,
        description="a system-account user's .creds: revocations are pushed to the servers with it",
    )
    nats_public_url: str | None = Field(
        default=None, description="the NATS URL handed to service accounts; unset: APEX_NATS_URL"
    )

    @property
    def bus_url_for_clients(self) -> str:
        return self.nats_public_url or self.nats_url

    @model_validator(mode="after")
    def _production_needs_the_issuer(self) -> ServiceAccountSettings:
        if self.env != "production" or not self.service_accounts:
            return self
        missing = [
            name
            for name, value in (
                ("APEX_NATS_ISSUER_FILE", self.nats_issuer_file),
                ("APEX_NATS_SYSTEM_CREDS", self.nats_system_creds),
            )
            if value is None or not value.is_file()
        ]
        if missing:
            raise ValueError(
                f"service accounts are on (APEX_SERVICE_ACCOUNTS): {', '.join(missing)} must name"
                " readable files, or set APEX_SERVICE_ACCOUNTS=false"
            )
        return self
