#!/usr/bin/python3
"""Several files in one job: submit them (one multipart request), wait for the job, and
print one result per file.

    FLEET_API_KEY=fk_... PYTHONPATH=clients/python \
        examples/python/submit_files.py --url http://127.0.0.1:8080 echo a.pdf b.png

The model is named on the command line. It gets the files as input["files"] (each with
name, content_type, size and bytes) and answers one entry per file, in the same order, in
its result's "files" (the echo model answers the files themselves) or "results" list.
Prints one JSON line per file: its name and what the model answered for it (without the
file's bytes). Exit status: 0 when the job succeeded, 1 when it failed or timed out.
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys

import fleet


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("FLEET_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--api-key", default=os.environ.get("FLEET_API_KEY"))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    ap.add_argument("--input", default="{}", help="the job's input besides the files (JSON)")
    ap.add_argument("model")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)

    files = []
    for path in a.files:
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            files.append((os.path.basename(path), f.read(), ctype))

    with fleet.Client(a.url, a.api_key) as client:
        try:
            result = client.submit_and_wait(a.model, json.loads(a.input), files=files,
                                            timeout=a.timeout)
        except (fleet.JobFailed, fleet.JobCancelled) as e:
            print(f"job {e.job.get('id')} {e.job.get('status')}: {e.error}", file=sys.stderr)
            return 1
        except fleet.WaitTimeout as e:
            print(f"job {e.job.get('id')} not done after {a.timeout} s", file=sys.stderr)
            return 1

    per_file = []
    if isinstance(result, dict):
        per_file = result.get("results") or result.get("files") or []
    if len(per_file) != len(files):
        print(f"the model answered {len(per_file)} results for {len(files)} files: "
              f"{json.dumps(result)[:500]}", file=sys.stderr)
        return 1
    for (name, _, _), r in zip(files, per_file):
        r = {k: v for k, v in r.items() if k != "bytes"} if isinstance(r, dict) else r
        print(json.dumps({"file": name, "result": r}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
