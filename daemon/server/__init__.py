"""The embedded Mapillary-compatible server (graph API, upload service, thumbnails, faults).

    async with running_server(ServerConfig(data_dir=folder)) as server:
        server.graph_url, server.upload_url, server.stats()

``ServerThread`` does the same from synchronous code; ``create_app`` gives the bare application.
"""

from daemon.server.app import create_app
from daemon.server.config import ServerConfig, parse_outage
from daemon.server.runner import RunningServer, ServerThread, running_server
from daemon.server.store import Store, make_handle, parse_handle
from daemon.server.validate import Rejected

__all__ = [
    "Rejected",
    "RunningServer",
    "ServerConfig",
    "ServerThread",
    "Store",
    "create_app",
    "make_handle",
    "parse_handle",
    "parse_outage",
    "running_server",
]
