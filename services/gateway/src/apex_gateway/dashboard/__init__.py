"""The operators' health dashboard: its API (``/api/v1/dashboard/*``, admin only) and the
figures it is made of."""

from apex_gateway.dashboard.api import router
from apex_gateway.dashboard.figures import publish_delivery_figures

__all__ = ["publish_delivery_figures", "router"]
