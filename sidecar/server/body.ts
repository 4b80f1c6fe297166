/**
 * The request body, read once with a size limit and validated as an OpenAI chat request.
 * Over the limit: 413 as soon as the limit is crossed (or at once from Content-Length).
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { ChatRequest } from '../translate/provider.ts';
import { type ErrorReply, errorReply } from '../core/errors.ts';

export type AnyRequest = IncomingMessage | Http2ServerRequest;

export class BodyTooLarge extends Error {}

/** Rejects with BodyTooLarge past the limit, or with the stream's error when the client goes away. */
export function readBody(req: AnyRequest, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    };
    let ended = false;
    req.on('data', onData);
    req.once('end', () => {
      ended = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.once('error', reject);
    // a client that goes away before the end: 'close' without 'end' (no Error built otherwise)
    req.once('close', () => {
      if (!ended) reject(new Error('the client went away while sending'));
    });
  });
}

/**
 * Parses and checks the body; returns the request, or the 4xx to send. `otherType`: the client
 * declared a content type that is not JSON (curl -d sends form-urlencoded): a body that is JSON
 * anyway is accepted, one that is not gets a 415 rather than a 400.
 */
export function parseChatRequest(received: Buffer, clientAuthorization: string | undefined, otherType?: string): ChatRequest | ErrorReply {
  const notJson = (reply: ErrorReply) =>
    otherType === undefined
      ? reply
      : errorReply(
          415,
          'unsupported_media_type',
          `the request body is not JSON and its content-type is ${JSON.stringify(otherType.slice(0, 100))}: send a JSON chat request (content-type: application/json)`,
        );
  // A UTF-8 byte order mark is tolerated, and not forwarded (providers reject it)
  const raw = received[0] === 0xef && received[1] === 0xbb && received[2] === 0xbf ? received.subarray(3) : received;
  if (!isUtf8(raw)) return notJson(errorReply(400, 'invalid_utf8', 'the request body is not valid UTF-8'));
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    return notJson(errorReply(400, 'invalid_json', `the request body is not valid JSON: ${(err as Error).message}`));
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    return errorReply(400, 'invalid_request_body', 'the request body must be a JSON object');
  const body = json as Record<string, unknown>;
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    return errorReply(400, 'missing_messages', "'messages' is required and must be a non-empty array of chat messages");
  for (const [i, m] of body.messages.entries()) {
    if (m === null || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string')
      return errorReply(400, 'invalid_message', `messages[${i}] must be an object with a string 'role'`);
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
    return errorReply(400, 'invalid_type', "'stream' must be a boolean");
  if (body.model !== undefined && typeof body.model !== 'string') return errorReply(400, 'invalid_type', "'model' must be a string");
  return {
    raw,
    json: body,
    stream: body.stream === true,
    hasModel: body.model !== undefined,
    clientAuthorization,
    bodies: new Map(),
  };
}
