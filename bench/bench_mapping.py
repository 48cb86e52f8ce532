"""Micro-benchmark: map 200k synthetic device records through a 12-field mapping.

Prints one JSON line: {"records": N, "seconds": S, "records_per_s": R}. Only the mapping loop is timed
(record generation is not). Run: .venv/bin/python bench/bench_mapping.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from typing import Any

from itam_sync.mapping.loader import load_mapping_text

log = logging.getLogger(__name__)

MAPPING = """
streams:
  devices:
    entity: asset
    key: id
    observed_at: lastSyncDateTime
    fields:
      kind: {value: laptop}
      serial_number: {from: hardware.serialNumber, transforms: [serial]}
      hardware_uuid: {from: hardware.uuid, transforms: [uuid]}
      mac_addresses: {from: "[wiFiMacAddress, ethernetMacAddress]", transforms: [mac]}
      hostname: {from: deviceName, transforms: [hostname]}
      manufacturer: {from: manufacturer, transforms: [strip]}
      model: model
      os_name: operatingSystem
      os_version: osVersion
      last_seen: lastSyncDateTime
      mdm_managed:
        from: managementState
        transforms: [{map: {managed: true, retired: false}, default: false}]
      assigned_to: {from: [userPrincipalName, emailAddress], transforms: [email]}
"""


def synthetic_records(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` Intune-like device records with realistic messiness (junk serials, missing values)."""
    rnd = random.Random(seed)
    makers = ["Dell Inc.", "LENOVO", "HP", "Apple", " Microsoft Corporation "]
    out = []
    for i in range(n):
        mac = "".join(rnd.choice("0123456789abcdef") for _ in range(12))
        out.append({
            "id": f"dev-{i:08d}",
            "deviceName": f"LT-{i:06d}.corp.example.com",
            "manufacturer": rnd.choice(makers),
            "model": "Latitude 7440",
            "operatingSystem": "Windows",
            "osVersion": "10.0.22631.3737",
            "lastSyncDateTime": f"2024-06-{1 + i % 28:02d}T{i % 24:02d}:15:00Z",
            "managementState": rnd.choice(["managed", "retired", "Managed"]),
            "userPrincipalName": f"User{i}@Example.com" if i % 10 else "",
            "emailAddress": f"user{i}@example.com",
            "wiFiMacAddress": ":".join(mac[j:j + 2] for j in range(0, 12, 2)).upper(),
            "ethernetMacAddress": None if i % 3 else "00E04C" + mac[6:],
            "hardware": {
                "serialNumber": "To Be Filled By O.E.M." if i % 50 == 0 else f"SN{i:010d}",
                "uuid": f"{i:08X}-1111-2222-3333-{i:012X}",
            },
        })
    return out


def main() -> None:
    """Run the benchmark and print its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    stream = load_mapping_text(MAPPING, "bench").stream("devices")
    records = synthetic_records(args.records)
    smap = stream.map
    start = time.perf_counter()
    for r in records:
        smap(r, "devices")
    seconds = time.perf_counter() - start
    print(json.dumps({"records": len(records), "seconds": round(seconds, 3),
                      "records_per_s": round(len(records) / seconds)}))


if __name__ == "__main__":
    main()
