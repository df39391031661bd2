"""Small asyncio helpers the loops share.

Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that arrives just as the awaited
future completes (fixed in 3.12). A loop that waits on an event that is already set then never
sees its cancellation and spins forever, which is how a stopping daemon hung at 100 % CPU. These
helpers wait with ``asyncio.wait`` instead, which always lets a cancellation through.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True when it is set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
