"""A small msgpack codec for job inputs and results (Debian packages no msgpack for the
interpreter the tests use, and the library depends on python3-redis alone).

Decoding: maps -> dict, arrays -> list, str -> str, bin -> bytes, fleet's float32 array
extension (type 1, little-endian IEEE 754 payload, docs/api.md "Result formats") -> list
of float; other extension types are refused. Encoding: None, bool, int, float, str, bytes,
list/tuple, dict with str keys; bytes become `bin`, floats float64.
"""
import struct

F32_EXT = 1


class MsgpackError(ValueError):
    pass


def packb(obj):
    out = bytearray()
    _pack(obj, out, 0)
    return bytes(out)


def _pack(o, out, depth):
    if depth > 64:
        raise MsgpackError("value nested more than 64 deep")
    if o is None:
        out.append(0xC0)
    elif o is True:
        out.append(0xC3)
    elif o is False:
        out.append(0xC2)
    elif isinstance(o, int):
        if 0 <= o < 0x80:
            out.append(o)
        elif -32 <= o < 0:
            out.append(o & 0xFF)
        elif 0 <= o < 1 << 64:
            for tag, fmt, lim in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                                  (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
                if o < lim:
                    out.append(tag)
                    out += struct.pack(fmt, o)
                    break
        elif -(1 << 63) <= o < 0:
            for tag, fmt, lim in ((0xD0, ">b", 1 << 7), (0xD1, ">h", 1 << 15),
                                  (0xD2, ">i", 1 << 31), (0xD3, ">q", 1 << 63)):
                if o >= -lim:
                    out.append(tag)
                    out += struct.pack(fmt, o)
                    break
        else:
            raise MsgpackError("integer out of range: %d" % o)
    elif isinstance(o, float):
        out.append(0xCB)
        out += struct.pack(">d", o)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 1 << 8:
            out += bytes((0xD9, n))
        elif n < 1 << 16:
            out.append(0xDA)
            out += struct.pack(">H", n)
        else:
            out.append(0xDB)
            out += struct.pack(">I", n)
        out += b
    elif isinstance(o, (bytes, bytearray, memoryview)):
        b = bytes(o)
        n = len(b)
        if n < 1 << 8:
            out += bytes((0xC4, n))
        elif n < 1 << 16:
            out.append(0xC5)
            out += struct.pack(">H", n)
        else:
            out.append(0xC6)
            out += struct.pack(">I", n)
        out += b
    elif isinstance(o, (list, tuple)):
        _head(out, len(o), 0x90, 0xDC, 0xDD)
        for v in o:
            _pack(v, out, depth + 1)
    elif isinstance(o, dict):
        _head(out, len(o), 0x80, 0xDE, 0xDF)
        for k, v in o.items():
            if not isinstance(k, str):
                raise MsgpackError("map keys must be strings, not %s" % type(k).__name__)
            _pack(k, out, depth + 1)
            _pack(v, out, depth + 1)
    else:
        raise MsgpackError("cannot encode a %s" % type(o).__name__)


def _head(out, n, fix, t16, t32):
    if n < 16:
        out.append(fix | n)
    elif n < 1 << 16:
        out.append(t16)
        out += struct.pack(">H", n)
    else:
        out.append(t32)
        out += struct.pack(">I", n)


def unpackb(data):
    data = bytes(data)
    v, at = _unpack(data, 0, 0)
    if at != len(data):
        raise MsgpackError("%d bytes after the value" % (len(data) - at))
    return v


def _take(data, at, n):
    if at + n > len(data):
        raise MsgpackError("truncated at byte %d" % at)
    return data[at:at + n], at + n


def _unpack(data, at, depth):
    if depth > 64:
        raise MsgpackError("value nested more than 64 deep")
    b, at = _take(data, at, 1)
    t = b[0]
    if t < 0x80:
        return t, at
    if t >= 0xE0:
        return t - 0x100, at
    if 0x80 <= t <= 0x8F:
        return _map(data, at, t & 0x0F, depth)
    if 0x90 <= t <= 0x9F:
        return _array(data, at, t & 0x0F, depth)
    if 0xA0 <= t <= 0xBF:
        raw, at = _take(data, at, t & 0x1F)
        return raw.decode("utf-8"), at
    if t == 0xC0:
        return None, at
    if t == 0xC2:
        return False, at
    if t == 0xC3:
        return True, at
    sizes = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
    if t in sizes:
        raw, at = _take(data, at, sizes[t])
        n = int.from_bytes(raw, "big")
        raw, at = _take(data, at, n)
        return (raw if t in (0xC4, 0xC5, 0xC6) else raw.decode("utf-8")), at
    nums = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
            0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
    if t in nums:
        fmt = nums[t]
        raw, at = _take(data, at, struct.calcsize(fmt))
        return struct.unpack(fmt, raw)[0], at
    if t in (0xDC, 0xDD):
        raw, at = _take(data, at, 2 if t == 0xDC else 4)
        return _array(data, at, int.from_bytes(raw, "big"), depth)
    if t in (0xDE, 0xDF):
        raw, at = _take(data, at, 2 if t == 0xDE else 4)
        return _map(data, at, int.from_bytes(raw, "big"), depth)
    ext = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
    if t in ext or t in (0xC7, 0xC8, 0xC9):
        if t in ext:
            n = ext[t]
        else:
            raw, at = _take(data, at, {0xC7: 1, 0xC8: 2, 0xC9: 4}[t])
            n = int.from_bytes(raw, "big")
        raw, at = _take(data, at, 1)
        etype = raw[0]
        payload, at = _take(data, at, n)
        if etype != F32_EXT or n % 4:
            raise MsgpackError("unknown extension type %d" % etype)
        return list(struct.unpack("<%df" % (n // 4), payload)), at
    raise MsgpackError("invalid msgpack byte 0x%02x at %d" % (t, at - 1))


def _array(data, at, n, depth):
    out = []
    for _ in range(n):
        v, at = _unpack(data, at, depth + 1)
        out.append(v)
    return out, at


def _map(data, at, n, depth):
    out = {}
    for _ in range(n):
        k, at = _unpack(data, at, depth + 1)
        v, at = _unpack(data, at, depth + 1)
        if isinstance(k, (list, dict)):
            raise MsgpackError("a map key that is an array or a map")
        out[k] = v
    return out, at
