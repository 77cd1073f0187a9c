#!/usr/bin/python3
"""A model written in Python, served with fleet.worker: word statistics of text documents.

    PYTHONPATH=clients/python FLEET_REDIS_URL=redis://127.0.0.1:6379 \
        examples/python/wordstats_worker.py [--max-batch 8] [--page-lines 40]

Model "wordstats". A job's input is a text, or an object with "text" (one document) or
"files" (several: what a multipart submit makes, each {"name", "bytes", ...}), and
optionally "page_lines". Each document is cut into pages (at form feeds, and every
page_lines lines, default 40); each page's statistics are emitted as a partial output as
soon as they are computed ({"file", "page", "lines", "words", "unique", "top"}), and the
result is one entry per file: {"name", "pages", "lines", "words", "unique", "chars",
"top": [[word, count], ...5]}. A file that is not UTF-8 text fails the job with its name.
No network, no dependency: the "model" is Python's own text handling.
"""
import argparse
import collections
import logging
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

from fleet.worker import serve  # noqa: E402

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
TOP = 5


def pages_of(text, page_lines):
    for chunk in text.split("\f"):
        lines = chunk.splitlines()
        if not lines:
            continue
        for at in range(0, len(lines), page_lines):
            yield lines[at:at + page_lines]


def documents(x):
    """[(name, text)] of one job's input; ValueError naming what is wrong."""
    if isinstance(x, str):
        return [("text", x)]
    if not isinstance(x, dict):
        raise ValueError('input must be a text, {"text": ...} or {"files": [...]}')
    if isinstance(x.get("text"), str):
        return [(x.get("name") or "text", x["text"])]
    files = x.get("files")
    if not isinstance(files, list) or not files:
        raise ValueError('input has no "text" and no "files"')
    out = []
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            raise ValueError("file %d is not an object" % (i + 1))
        name = f.get("name") or "file %d" % (i + 1)
        data = f.get("bytes")
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes):
            raise ValueError("%s: no bytes" % name)
        try:
            out.append((name, data.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise ValueError("%s is not UTF-8 text (byte %d)" % (name, e.start)) from None
    return out


def wordstats(inputs, ctx):
    results = []
    for i, x in enumerate(inputs):
        try:
            docs = documents(x)
        except ValueError as e:
            ctx.fail(i, str(e))
            results.append(None)
            continue
        page_lines = x.get("page_lines", 40) if isinstance(x, dict) else 40
        if not isinstance(page_lines, int) or page_lines < 1:
            ctx.fail(i, "page_lines must be a positive integer")
            results.append(None)
            continue
        per_file = []
        total_pages = sum(1 for _, t in docs for _ in pages_of(t, page_lines))
        done = 0
        for name, text in docs:
            counts = collections.Counter()
            n_pages = n_lines = 0
            for page in pages_of(text, page_lines):
                if ctx.cancelled(i):
                    break
                words = [w.lower() for line in page for w in WORD.findall(line)]
                pc = collections.Counter(words)
                counts.update(pc)
                n_pages += 1
                n_lines += len(page)
                done += 1
                ctx.emit(i, {"file": name, "page": n_pages, "lines": len(page),
                             "words": len(words), "unique": len(pc),
                             "top": [[w, c] for w, c in pc.most_common(TOP)]})
                ctx.progress(i, done, total_pages, "%s: page %d" % (name, n_pages))
            per_file.append({"name": name, "pages": n_pages, "lines": n_lines,
                             "words": sum(counts.values()), "unique": len(counts),
                             "chars": len(text),
                             "top": [[w, c] for w, c in counts.most_common(TOP)]})
        results.append({"files": per_file})
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=os.environ.get("FLEET_REDIS_URL",
                                                          "redis://127.0.0.1:6379"))
    ap.add_argument("--prefix", default=os.environ.get("FLEET_PREFIX", "fleet"))
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--model", default="wordstats")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(a.model, wordstats, redis_url=a.redis_url, prefix=a.prefix, max_batch=a.max_batch)


if __name__ == "__main__":
    main()
