"""``python -m services.provisioner``: run the provisioner until SIGTERM."""

from services.common.runner import run_service
from services.provisioner.app import create_app
from services.provisioner.settings import ProvisionerSettings

if __name__ == "__main__":
    settings = ProvisionerSettings()
    run_service("provisioner", create_app(settings), settings, port=settings.health_port)
