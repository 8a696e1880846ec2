// A small MessagePack codec for the chat protocol (spec: github.com/msgpack/msgpack/blob/master/spec.md).
// Covers what the protocol carries: nil, booleans, integers (up to 2^53), float64,
// strings, binary, arrays and maps with string keys. No extension types.

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

export function encode(value) {
  const out = [];
  write(value, out);
  return new Uint8Array(out);
}

function pushUint(out, n, bytes) {
  for (let i = bytes - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) & 0xff);
}

function write(value, out) {
  if (value === null || value === undefined) { out.push(0xc0); return; }
  if (value === false) { out.push(0xc2); return; }
  if (value === true) { out.push(0xc3); return; }
  if (typeof value === "number") {
    if (Number.isInteger(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER) {
      if (value >= 0) {
        if (value < 0x80) out.push(value);
        else if (value < 0x100) { out.push(0xcc); pushUint(out, value, 1); }
        else if (value < 0x10000) { out.push(0xcd); pushUint(out, value, 2); }
        else if (value < 0x100000000) { out.push(0xce); pushUint(out, value, 4); }
        else { out.push(0xcf); pushUint(out, value, 8); }
      } else if (value >= -32) out.push(value & 0xff);
      else if (value >= -0x80) { out.push(0xd0, value & 0xff); }
      else if (value >= -0x8000) { out.push(0xd1); pushUint(out, value & 0xffff, 2); }
      else if (value >= -0x80000000) { out.push(0xd2); pushUint(out, value >>> 0, 4); }
      else {
        const buf = new DataView(new ArrayBuffer(8));
        buf.setBigInt64(0, BigInt(value));
        out.push(0xd3, ...new Uint8Array(buf.buffer));
      }
      return;
    }
    const buf = new DataView(new ArrayBuffer(8));
    buf.setFloat64(0, value);
    out.push(0xcb, ...new Uint8Array(buf.buffer));
    return;
  }
  if (typeof value === "string") {
    const bytes = textEncoder.encode(value);
    const n = bytes.length;
    if (n < 32) out.push(0xa0 | n);
    else if (n < 0x100) out.push(0xd9, n);
    else if (n < 0x10000) { out.push(0xda); pushUint(out, n, 2); }
    else { out.push(0xdb); pushUint(out, n, 4); }
    for (const b of bytes) out.push(b);
    return;
  }
  if (value instanceof Uint8Array) {
    const n = value.length;
    if (n < 0x100) out.push(0xc4, n);
    else if (n < 0x10000) { out.push(0xc5); pushUint(out, n, 2); }
    else { out.push(0xc6); pushUint(out, n, 4); }
    for (const b of value) out.push(b);
    return;
  }
  if (Array.isArray(value)) {
    const n = value.length;
    if (n < 16) out.push(0x90 | n);
    else if (n < 0x10000) { out.push(0xdc); pushUint(out, n, 2); }
    else { out.push(0xdd); pushUint(out, n, 4); }
    for (const item of value) write(item, out);
    return;
  }
  if (typeof value === "object") {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    const n = keys.length;
    if (n < 16) out.push(0x80 | n);
    else if (n < 0x10000) { out.push(0xde); pushUint(out, n, 2); }
    else { out.push(0xdf); pushUint(out, n, 4); }
    for (const key of keys) { write(key, out); write(value[key], out); }
    return;
  }
  throw new TypeError(`cannot encode ${typeof value} as MessagePack`);
}

export function decode(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;

  const uint = (n) => {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + bytes[pos++];
    return v;
  };
  const str = (n) => { const s = textDecoder.decode(bytes.subarray(pos, pos + n)); pos += n; return s; };
  const bin = (n) => { const b = bytes.slice(pos, pos + n); pos += n; return b; };
  const arr = (n) => { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = read(); return a; };
  const map = (n) => { const o = {}; for (let i = 0; i < n; i++) { const k = read(); o[k] = read(); } return o; };

  function read() {
    if (pos >= bytes.length) throw new RangeError("truncated MessagePack");
    const t = bytes[pos++];
    if (t < 0x80) return t;
    if (t < 0x90) return map(t & 0x0f);
    if (t < 0xa0) return arr(t & 0x0f);
    if (t < 0xc0) return str(t & 0x1f);
    if (t >= 0xe0) return t - 0x100;
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(uint(1));
      case 0xc5: return bin(uint(2));
      case 0xc6: return bin(uint(4));
      case 0xca: { const v = view.getFloat32(pos); pos += 4; return v; }
      case 0xcb: { const v = view.getFloat64(pos); pos += 8; return v; }
      case 0xcc: return uint(1);
      case 0xcd: return uint(2);
      case 0xce: return uint(4);
      case 0xcf: return uint(8);
      case 0xd0: { const v = view.getInt8(pos); pos += 1; return v; }
      case 0xd1: { const v = view.getInt16(pos); pos += 2; return v; }
      case 0xd2: { const v = view.getInt32(pos); pos += 4; return v; }
      case 0xd3: { const v = Number(view.getBigInt64(pos)); pos += 8; return v; }
      case 0xd9: return str(uint(1));
      case 0xda: return str(uint(2));
      case 0xdb: return str(uint(4));
      case 0xdc: return arr(uint(2));
      case 0xdd: return arr(uint(4));
      case 0xde: return map(uint(2));
      case 0xdf: return map(uint(4));
      default: throw new TypeError(`unsupported MessagePack type 0x${t.toString(16)}`);
    }
  }

  const value = read();
  if (pos !== bytes.length) throw new RangeError("extra bytes after MessagePack value");
  return value;
}
