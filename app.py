"""The digit recognition web service.

    python app.py                      # development server on 127.0.0.1:5000
    gunicorn 'app:create_app()'        # production (settings in gunicorn.conf.py)

Settings come from defaults, then ``DIGITS_*`` environment variables, then
the ``test_config`` mapping (``web/config.py``); the README lists them all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask

import folder_paths
from model import WeightsError
from web import (
    admin,
    api,
    auth,
    config,
    cors,
    docs,
    errors,
    headers,
    inference,
    limits,
    metrics,
    openapi,
    page,
    probes,
    request_log,
)
from web.admin import is_loopback
from web.uploads import InMemoryRequest


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application and load the model once for this process."""
    app = Flask(
        __name__,
        template_folder=folder_paths.get_folder("templates"),
        static_folder=folder_paths.get_folder("static"),
    )
    app.request_class = InMemoryRequest
    config.init_app(app, test_config)
    errors.init_app(app)
    request_log.init_app(app)
    metrics.init_app(app)
    cors.init_app(app)
    headers.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
    inference.init_app(app)
    app.register_blueprint(page.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(probes.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(docs.bp)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the digit service's development server.")
    parser.add_argument("--host", default=os.environ.get("DIGITS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DIGITS_PORT", "5000")))
    parser.add_argument("--debug", action="store_true",
                        default=config.is_true(os.environ.get("DIGITS_DEBUG")))
    args = parser.parse_args(argv)
    if args.debug and args.host != "localhost" and not is_loopback(args.host):
        # the Werkzeug debugger runs any code a client sends it
        sys.exit(f"error: debug mode only on a loopback address, not {args.host}")
    try:
        app = create_app()
    except (WeightsError, ValueError) as error:
        sys.exit(f"error: {error}")
    app.run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
