#!/usr/bin/python3
"""make_classify_input_corpus.py: writes the seeds of fuzz_classify_input
(corpus/fuzz_classify_input/).

The seeds are committed; run this again only to change them (it rewrites the folder):

    /usr/bin/python3 tests/fuzz/make_classify_input_corpus.py

Job inputs of the classify model, as msgpack maps: the image as bin, as base64 in every
spelling worker/classify/input.h accepts, as a multipart file part, with "files": [] beside
"image"; then refusals (unknown fields, one with a line break in its name, repeated fields, two file parts, truncated values,
bytes after the map, headers claiming 2^32 - 1 entries, nesting past 32 levels). Seeds
named diff_* are read by the target's second pass as a flags byte (which base64 spelling)
then an image's bytes. The PNGs are written here with stored (uncompressed) deflate
blocks and a CRC-32 and Adler-32 computed in Python, so the script needs only struct.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_classify_input")

# ------------------------------------------------------------------ msgpack ---------


def mp_str(s):
    b = s.encode() if isinstance(s, str) else s
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n < 256:
        return b"\xd9" + struct.pack(">B", n) + b
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def mp_bin(b):
    n = len(b)
    if n < 256:
        return b"\xc4" + struct.pack(">B", n) + b
    if n < 65536:
        return b"\xc5" + struct.pack(">H", n) + b
    return b"\xc6" + struct.pack(">I", n) + b


def mp_uint(v):
    if v < 128:
        return bytes([v])
    if v < 65536:
        return b"\xcd" + struct.pack(">H", v)
    return b"\xce" + struct.pack(">I", v)


def mp_array(items):
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return head + b"".join(items)


def mp_map(pairs):
    n = len(pairs)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return head + b"".join(k + v for k, v in pairs)


def file_part(data, ctype="image/png"):
    return mp_map([(mp_str("name"), mp_str("file")), (mp_str("filename"), mp_str("x.png")),
                   (mp_str("content_type"), mp_str(ctype)), (mp_str("size"), mp_uint(len(data))),
                   (mp_str("bytes"), mp_bin(data))])


# ------------------------------------------------------------------ base64 ----------

STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data, alpha=STD, pad=True, line=0):
    out = bytearray()
    for i in range(0, len(data), 3):
        g = data[i:i + 3]
        v = int.from_bytes(g + b"\0" * (3 - len(g)), "big")
        chars = [alpha[(v >> s) & 63] for s in (18, 12, 6, 0)][:len(g) + 1]
        out += bytes(chars)
        if pad:
            out += b"=" * (3 - len(g))
    if line:
        out = b"\r\n".join(out[i:i + line] for i in range(0, len(out), line))
    return bytes(out)


# ------------------------------------------------------------------ PNG -------------


def crc32(data):
    c = 0xffffffff
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0xedb88320 if c & 1 else 0)
    return c ^ 0xffffffff


def adler32(data):
    a, b = 1, 0
    for x in data:
        a = (a + x) % 65521
        b = (b + a) % 65521
    return (b << 16) | a


def chunk(kind, data=b""):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc32(kind + data))


def zlib_stored(data):
    out = bytearray(b"\x78\x01")
    for i in range(0, max(len(data), 1), 65535):
        block = data[i:i + 65535]
        last = 1 if i + 65535 >= len(data) else 0
        out += bytes([last]) + struct.pack("<HH", len(block), len(block) ^ 0xffff) + block
    return bytes(out) + struct.pack(">I", adler32(data))


def png_gray(w, h):
    rows = b"".join(b"\0" + bytes((x * 9 + y * 5) & 0xff for x in range(w)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib_stored(rows)) + chunk(b"IEND"))


# ------------------------------------------------------------------ seeds -----------


def main():
    raw = bytes((i * 7 + 3) & 0xff for i in range(784))
    png = png_gray(28, 28)
    big = png_gray(56, 40)
    image = lambda v: mp_map([(mp_str("image"), v)])
    seeds = {
        "image_bin_raw784": image(mp_bin(raw)),
        "image_bin_png": image(mp_bin(png)),
        "image_bin_png_56x40": image(mp_bin(big)),
        "image_b64_raw784": image(mp_str(b64(raw))),
        "image_b64_url_nopad_lines": image(mp_str(b64(raw, URL, False, 76))),
        "image_data_url_png": image(mp_str(b"data:image/png;base64," + b64(png))),
        "image_b64_padding_3": image(mp_str(b"QQ===")),
        "image_b64_pad_in_middle": image(mp_str(b"QQ==QQ==")),
        "image_b64_one_char": image(mp_str(b"QUJDR")),
        "image_data_url_not_base64": image(mp_str(b"data:image/png,QUI=")),
        "image_empty": image(mp_str(b"")),
        "image_nil": image(b"\xc0"),
        "files_one_png": mp_map([(mp_str("files"), mp_array([file_part(png)]))]),
        "files_one_raw": mp_map([(mp_str("files"), mp_array([file_part(raw, "x")]))]),
        "files_none_with_image": mp_map([(mp_str("image"), mp_str(b64(png))),
                                         (mp_str("files"), mp_array([]))]),
        "files_two": mp_map([(mp_str("files"), mp_array([file_part(png), file_part(raw)]))]),
        "files_part_without_bytes": mp_map([(mp_str("files"),
                                             mp_array([mp_map([(mp_str("name"),
                                                                mp_str("f"))])]))]),
        "unknown_field": mp_map([(mp_str("picture"), mp_bin(raw))]),
        # fuzz_classify_input's first find: a field name's line break went into the message
        "unknown_field_line_break": mp_map([(mp_str(b"\n\x00jge"), mp_str(b""))]),
        "repeated_field": mp_map([(mp_str("image"), mp_bin(raw)), (mp_str("image"), mp_bin(raw))]),
        "truncated": image(mp_bin(raw))[:500],
        "bytes_after_map": image(mp_bin(raw)) + b"\xc0",
        "map32_claims_4g": b"\xdf\xff\xff\xff\xff" + mp_str("image") + mp_bin(raw),
        "array32_claims_4g": mp_map([(mp_str("files"), b"\xdd\xff\xff\xff\xff" + file_part(raw))]),
        "nested_40": image(b"\x91" * 40 + b"\xc0"),
        "not_a_map": mp_array([mp_bin(raw)]),
        "diff_flags00_png": b"\x00" + png,
        "diff_flags1f_png": b"\x1f" + png,
        "diff_flags05_raw784": b"\x05" + raw,
        "diff_flags1a_png_56x40": b"\x1a" + big,
    }
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), os.path.relpath(OUT, os.getcwd())))


if __name__ == "__main__":
    main()
