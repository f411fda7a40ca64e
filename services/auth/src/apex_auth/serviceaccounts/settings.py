"""What issuing service accounts needs from configuration (the auth service's settings
inherit it): the issuer file and the system account's credentials, both written by
``apex up`` under ``.apex/nats-auth/`` and mounted from secrets in a deployment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from apex_runtime import ServiceSettings


class ServiceAccountSettings(ServiceSettings):
    service_accounts: bool | None = Field(
        default=None,
        description="tenants may create service accounts (NATS users of the bus API): true needs the"
        " issuer file and system creds (production refuses to start without them); unset: on when both"
        " are configured; false: off",
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
    def issues_service_accounts(self) -> bool:
        configured = self.nats_issuer_file is not None and self.nats_system_creds is not None
        return configured if self.service_accounts is None else self.service_accounts

    @property
    def bus_url_for_clients(self) -> str:
        return self.nats_public_url or self.nats_url

    @model_validator(mode="after")
    def _production_needs_the_issuer(self) -> ServiceAccountSettings:
        if self.env != "production" or self.service_accounts is not True:
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
            raise ValueError(f"APEX_SERVICE_ACCOUNTS=true: {', '.join(missing)} must name readable files")
        return self
