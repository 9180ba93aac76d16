"""Command line for closing the loop: query, drift, signal, serve. Each verb lives in its own
``cli_<verb>`` module, its logic in the module named after the stage."""

from __future__ import annotations

from factory.cli import drift as cli_drift
from factory.cli import query as cli_query
from factory.cli import serve as cli_serve
from factory.cli import signal as cli_signal

HANDLERS = {
    "query": cli_query.cmd_query,
    "drift": cli_drift.cmd_drift,
    "signal": cli_signal.cmd_signal,
    "serve": cli_serve.cmd_serve,
}
