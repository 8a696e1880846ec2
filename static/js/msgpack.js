// The MessagePack codec of the chat.v1.msgpack subprotocol: the @msgpack/msgpack package
// (pinned in package.json, installed by bin/bootstrap). The browser finds it through the
// import map in templates/base.html, Node through node_modules.
// A field whose value is undefined is left out, as JSON.stringify leaves it out.
import { Encoder, decode } from "@msgpack/msgpack";

const encoder = new Encoder({ ignoreUndefined: true });

export function encode(value) {
  return encoder.encode(value);
}

export { decode };
