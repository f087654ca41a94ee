"""Graceful stops on SIGTERM and SIGINT for the long-running processes."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

logger = logging.getLogger(__name__)


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGTERM or SIGINT; a second SIGINT interrupts at once.

    Note: signal handlers can only be installed from the main thread.
    """

    def handle(signum, _frame):
        logger.info("Stopping on signal signal=%s", signal.Signals(signum).name)
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
