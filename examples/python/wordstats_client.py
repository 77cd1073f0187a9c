#!/usr/bin/python3
"""Word statistics of text files with the "wordstats" model (wordstats_worker.py): the
files go in one job, the script waits for it and prints one JSON line per file.

    FLEET_API_KEY=fk_... PYTHONPATH=clients/python \
        examples/python/wordstats_client.py --url http://127.0.0.1:8080 a.txt b.txt

Exit status: 0 when the job succeeded, 1 when it failed or timed out.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

import fleet  # noqa: E402


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("FLEET_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--api-key", default=os.environ.get("FLEET_API_KEY"))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    ap.add_argument("--page-lines", type=int, default=40)
    ap.add_argument("--model", default="wordstats")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    files = []
    for path in a.files:
        with open(path, "rb") as f:
            files.append((os.path.basename(path), f.read(), "text/plain"))
    with fleet.Client(a.url, api_key=a.api_key) as c:
        job = c.submit(a.model, {"page_lines": a.page_lines}, files=files)
        try:
            result = job.wait(timeout=a.timeout)
        except fleet.FleetError as e:
            print("job %s: %s" % (job.id, e), file=sys.stderr)
            return 1
    for f in result["files"]:
        print(json.dumps(f, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
