"""``python -m services.gateway``: serve the gateway API until SIGTERM."""

from services.common.runner import run_service
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

if __name__ == "__main__":
    settings = GatewaySettings()
    run_service("gateway", create_app(settings), settings, port=settings.port)
