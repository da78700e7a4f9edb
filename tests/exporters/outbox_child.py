"""A child process running an outbox with an OTLP sink and a JSONL sink, driven over stdin.

Used by the crash test (SIGKILL mid-outage, then restart). Commands, one per line:
``append A B`` appends ``many_alerts(N)[A:B]`` and answers ``ok <end_seq>``. Without commands
it just delivers whatever the outbox holds, forever.

    python -m tests.exporters.outbox_child DATA_DIR PROTOCOL ENDPOINT JSONL_PATH N
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from exporters.delivery import DeliveryPolicy, OutboxDispatcher
from exporters.jsonl import JsonlExporter
from exporters.otlp import OtlpExporter
from exporters.outbox import Outbox
from exporters.settings import OtlpSettings
from tests.exporters.script import many_alerts


async def main(data_dir: Path, protocol: str, endpoint: str, jsonl: Path, n: int) -> None:
    alerts = many_alerts(n)
    outbox = Outbox(data_dir, ["otlp", "jsonl"], max_bytes=1 << 20, segment_bytes=4096)
    otlp = OtlpExporter(OtlpSettings(protocol=protocol, endpoint=endpoint, timeout=0.5))  # type: ignore[arg-type]
    policy = DeliveryPolicy(max_batch=8, max_wait=0, backoff_initial=0.05, backoff_max=0.2)
    dispatchers = [OutboxDispatcher(outbox, otlp, policy), OutboxDispatcher(outbox, JsonlExporter(jsonl), policy)]
    for d in dispatchers:
        d.start()
    print("ready", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            await asyncio.Event().wait()  # parent closed stdin: keep delivering until killed
        parts = line.split()
        if parts and parts[0] == "append":
            a, b = int(parts[1]), int(parts[2])
            end = outbox.append(alerts[a:b])
            print(f"ok {end}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])))
