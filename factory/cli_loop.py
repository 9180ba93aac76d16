"""Command line for closing the loop: query, drift, signal, serve. Each verb lives in its own
``cli_<verb>`` module, its logic in the module named after the stage."""

from __future__ import annotations

from factory import cli_drift, cli_query, cli_serve, cli_signal

HANDLERS = {
    "query": cli_query.cmd_query,
    "drift": cli_drift.cmd_drift,
    "signal": cli_signal.cmd_signal,
    "serve": cli_serve.cmd_serve,
}
