"""The protocol's Lua scripts, assembled as the C programs assemble them.

shared/scripts/embed.cmake builds each script's text at build time: its shebang line (or
"#!lua"), then the blocks of lib.lua that its code uses (directly, or through a block
already taken), in lib.lua's order, then its own text. This module does the same from the
same files (the "scripts" folder next to it is a link to the repository's shared/scripts),
so each text is byte for byte the C one and both share one entry of Redis' script cache
(docs/protocol.md, "Sending a script"). The scripts are read, never copied.
"""
import hashlib
import os
import re

import redis
import redis.cluster

SCRIPTS_DIR = os.environ.get("FLEET_SCRIPTS_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "scripts")

# code_of's rules (embed.cmake): a text with an escaped quote or a long bracket loses only
# its whole-line comments; any other loses its strings' contents and every comment.
_TRICKY = re.compile(r"\\['\"]|\[=*\[")
_LINE_COMMENT = re.compile(r"\n[ \t]*--[^\n]*")
_STRING = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_LINE = re.compile(r"--- ([A-Za-z_][A-Za-z0-9_ ]*)\n")
_SHEBANG = re.compile(r"#!lua[^\n]*\n")


def _code_of(text):
    code = "\n" + text + "\n"
    if _TRICKY.search(code):
        return _LINE_COMMENT.sub("\n", code)
    return _COMMENT.sub("", _STRING.sub("''", code))


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def _blocks(lib):
    at = lib.find("\n--- ")
    if at < 0:
        raise RuntimeError("lib.lua: no block (a line \"--- name\")")
    at += 1
    if _code_of(lib[:at]).strip(" \t\n"):
        raise RuntimeError("lib.lua: code before the first block")
    rest = lib[at:]
    blocks = []
    while rest:
        nxt = rest.find("\n--- ")
        if nxt < 0:
            block, rest = rest, ""
        else:
            block, rest = rest[:nxt + 1], rest[nxt + 1:]
        m = _BLOCK_LINE.match(block)
        if not m:
            raise RuntimeError("lib.lua: a block line is not \"--- name [name...]\"")
        blocks.append((block, m.group(1).split(), _code_of(block)))
    return blocks


def assemble(name, scripts_dir=None):
    """The text of script `name` as embed.cmake writes it (a str)."""
    d = scripts_dir or SCRIPTS_DIR
    blocks = _blocks(_read(os.path.join(d, "lib.lua")))
    text = _read(os.path.join(d, name + ".lua"))
    shebang = "#!lua\n"
    m = _SHEBANG.match(text)
    if m:
        shebang = m.group(0)
        text = text[len(shebang):]
    scan = _code_of(text)
    chosen = [False] * len(blocks)
    added = True
    while added:
        added = False
        for i, (_, names, code) in enumerate(blocks):
            if chosen[i]:
                continue
            for n in names:
                if re.search(r"[^A-Za-z0-9_.:]" + n + r"[^A-Za-z0-9_]", scan):
                    chosen[i] = True
                    scan += code
                    added = True
                    break
    lib = "".join(b[0] for i, b in enumerate(blocks) if chosen[i])
    return shebang + lib + text


class Script:
    """One script: its text, its SHA-1, and a call that falls back to EVAL on NOSCRIPT."""

    def __init__(self, name, scripts_dir=None):
        self.name = name
        self.source = assemble(name, scripts_dir).encode("utf-8", "surrogateescape")
        self.sha = hashlib.sha1(self.source).hexdigest()

    def __call__(self, r, keys, args):
        """Runs the script on client r (EVALSHA, then EVAL on NOSCRIPT)."""
        try:
            return r.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return r.eval(self.source, len(keys), *keys, *args)

    def queue(self, pipe, keys, args):
        """Adds the EVALSHA to a pipeline; run_pipeline() resends it on NOSCRIPT."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)
        return (self, keys, args)


def run_pipeline(r, calls):
    """Sends calls [(Script, keys, args), ...] as one pipeline (no MULTI) and returns their
    replies, an exception object in place of an error reply. A call answered NOSCRIPT is
    sent again as EVAL, in order, after the pipeline.

    redis-py's cluster pipeline refuses scripts, so on a RedisCluster the calls are sent one
    after the other (each routed by its first key), with the same replies."""
    if isinstance(r, redis.cluster.RedisCluster):
        replies = []
        for s, keys, args in calls:
            try:
                replies.append(s(r, keys, args))
            except redis.exceptions.ResponseError as e:
                replies.append(e)
        return replies
    pipe = r.pipeline(transaction=False)
    for s, keys, args in calls:
        s.queue(pipe, keys, args)
    replies = pipe.execute(raise_on_error=False)
    for i, rep in enumerate(replies):
        if isinstance(rep, redis.exceptions.NoScriptError):
            s, keys, args = calls[i]
            try:
                replies[i] = r.eval(s.source, len(keys), *keys, *args)
            except redis.exceptions.ResponseError as e:
                replies[i] = e
    return replies


_cache = {}


def get(name):
    """The Script named `name`, assembled once per process."""
    s = _cache.get(name)
    if s is None:
        s = _cache[name] = Script(name)
    return s
