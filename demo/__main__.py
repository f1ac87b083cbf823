"""``python -m demo``: serve the demo host app."""

import uvicorn

from demo.app import create_app
from demo.settings import DemoSettings

if __name__ == "__main__":
    settings = DemoSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
