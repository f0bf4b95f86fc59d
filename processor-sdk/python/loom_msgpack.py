"""A small msgpack codec for Loom payloads (nil, bool, int, str, bin,
array, map), so the Python processor needs nothing beyond the standard
library and python3-protobuf. Decoding checks every length against the
input and bounds nesting: malformed input raises MsgpackError."""

import struct

MAX_DEPTH = 32


class MsgpackError(ValueError):
    pass


def packb(obj):
    out = bytearray()
    _pack(obj, out, 0)
    return bytes(out)


def _pack_int(v, out):
    if 0 <= v <= 0x7F:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif 0 <= v <= 0xFFFFFFFF:
        out += b"\xce" + struct.pack(">I", v)
    elif 0 <= v <= 0xFFFFFFFFFFFFFFFF:
        out += b"\xcf" + struct.pack(">Q", v)
    elif -(2 ** 63) <= v < 0:
        out += b"\xd3" + struct.pack(">q", v)
    else:
        raise MsgpackError("integer out of range: %d" % v)


def _pack_len(n, small_tag, small_max, tags, out):
    if n <= small_max:
        out.append(small_tag | n)
    elif n <= 0xFFFF:
        out += bytes([tags[0]]) + struct.pack(">H", n)
    else:
        out += bytes([tags[1]]) + struct.pack(">I", n)


def _pack(obj, out, depth):
    if depth > MAX_DEPTH:
        raise MsgpackError("nesting too deep")
    if obj is None:
        out.append(0xC0)
    elif obj is True or obj is False:
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, int):
        _pack_int(obj, out)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        _pack_len(len(raw), 0xA0, 31, (0xDA, 0xDB), out)
        out += raw
    elif isinstance(obj, (bytes, bytearray)):
        n = len(obj)
        if n <= 0xFF:
            out += bytes([0xC4, n])
        elif n <= 0xFFFF:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += obj
    elif isinstance(obj, (list, tuple)):
        _pack_len(len(obj), 0x90, 15, (0xDC, 0xDD), out)
        for item in obj:
            _pack(item, out, depth + 1)
    elif isinstance(obj, dict):
        _pack_len(len(obj), 0x80, 15, (0xDE, 0xDF), out)
        for k, v in obj.items():
            _pack(k, out, depth + 1)
            _pack(v, out, depth + 1)
    else:
        raise MsgpackError("cannot pack %s" % type(obj).__name__)


class _Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise MsgpackError("truncated at byte %d" % self.pos)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n):
        return int.from_bytes(self.take(n), "big")

    def sint(self, n):
        return int.from_bytes(self.take(n), "big", signed=True)

    def count(self, n, per_item):
        # every item needs a byte: a larger count is a lie, refused early
        if n * per_item > len(self.data) - self.pos:
            raise MsgpackError("container count exceeds the input at byte %d" % self.pos)
        return n


def unpackb(data):
    r = _Reader(data)
    obj = _unpack(r, 0)
    if r.pos != len(r.data):
        raise MsgpackError("trailing bytes after the object")
    return obj


def _unpack_container(r, b, depth):
    if depth >= MAX_DEPTH:
        raise MsgpackError("nesting too deep")
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        n = b & 0x0F if b <= 0x9F else r.uint(2 if b == 0xDC else 4)
        return [_unpack(r, depth + 1) for _ in range(r.count(n, 1))]
    n = b & 0x0F if b <= 0x8F else r.uint(2 if b == 0xDE else 4)
    out = {}
    for _ in range(r.count(n, 2)):
        k = _unpack(r, depth + 1)
        if isinstance(k, (list, dict)):
            raise MsgpackError("unhashable map key")
        out[k] = _unpack(r, depth + 1)
    return out


_FIXED = {0xCC: (1, False), 0xCD: (2, False), 0xCE: (4, False), 0xCF: (8, False),
          0xD0: (1, True), 0xD1: (2, True), 0xD2: (4, True), 0xD3: (8, True)}


def _unpack(r, depth):
    b = r.uint(1)
    if b <= 0x7F:
        return b
    if b >= 0xE0:
        return b - 0x100
    if 0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF:
        return _unpack_container(r, b, depth)
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
        n = b & 0x1F if b <= 0xBF else r.uint({0xD9: 1, 0xDA: 2, 0xDB: 4}[b])
        try:
            return r.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise MsgpackError("invalid utf-8 string: %s" % e) from None
    if b in (0xC4, 0xC5, 0xC6):
        return r.take(r.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[b]))
    if b == 0xC0:
        return None
    if b in (0xC2, 0xC3):
        return b == 0xC3
    if b in _FIXED:
        width, signed = _FIXED[b]
        return r.sint(width) if signed else r.uint(width)
    if b == 0xCA:
        return struct.unpack(">f", r.take(4))[0]
    if b == 0xCB:
        return struct.unpack(">d", r.take(8))[0]
    raise MsgpackError("unsupported type byte 0x%02x at byte %d" % (b, r.pos - 1))
