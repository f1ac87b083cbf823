"""``python -m services.sync``: run sync until SIGTERM."""

from services.common.runner import run_service
from services.sync.app import create_app
from services.sync.settings import SyncSettings

if __name__ == "__main__":
    settings = SyncSettings()
    run_service("sync", create_app(settings), settings, port=settings.health_port)
