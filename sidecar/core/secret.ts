import { readFileSync, type Stats, unwatchFile, watchFile } from 'node:fs';
import { inspect } from 'node:util';

/**
 * An API key, redacted by construction: it prints, serialises and inspects as "[redacted]",
 * so no log line, span, error message or /status output can carry it by accident.
 * Only the upstream request builder calls reveal().
 */
/** Every key value in use, so text from elsewhere (a provider's error message) can be scrubbed of them. */
const LIVE = new Set<string>();
/**
 * Credential-shaped strings, masked or not, as providers and proxies echo them: OpenAI and
 * Anthropic keys (sk-..., sk-ant-..., sk-proj-***abcd), AWS access key ids (AKIA..., ASIA...),
 * Google API keys (AIza...), and whatever follows a Bearer scheme.
 */
const KEY_SHAPE =
  /\b(?:(?:sk|rk|pk)-[A-Za-z0-9_*.-]{6,}|(?:AKIA|ASIA)[A-Z0-9]{16}|AIza[A-Za-z0-9_-]{30,})|(?<=\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}/g;

/**
 * The one scrubber: removes every credential the plan holds (every key value ever loaded,
 * rotated ones included), anything shaped like a credential, and the caller's `client`
 * credential (an Authorization header value, with or without its scheme). Every string that
 * leaves the process goes through it: client bodies and error events, log lines, /status,
 * metric labels, span attributes. Text quoted from elsewhere must be scrubbed *before* it is
 * cut (see `excerpt`): a cut key is no longer found.
 */
export function redact(text: string, client?: string): string {
  let out = text;
  const scrub = (value: string) => {
    if (value.length >= 4 && out.includes(value)) out = out.split(value).join('[redacted]');
  };
  for (const value of LIVE) scrub(value);
  if (client) {
    scrub(client);
    scrub(client.replace(/^\S+\s+/, ''));
  }
  return out.replace(KEY_SHAPE, '[redacted]');
}

/**
 * A short quote of text from outside (an upstream error body, a malformed event): scrubbed
 * first, then on one line and cut to `max` characters. Never cut first: a key that crosses the
 * cut would survive as a fragment no scrubber recognises.
 */
export function excerpt(text: string, max: number, client?: string): string {
  const oneLine = redact(text, client).replace(/\s+/g, ' ').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}

export class Secret {
  #value: string;
  constructor(value: string) {
    this.#value = value;
    if (value) LIVE.add(value);
  }
  /** A rotated key (the mounted Secret changed): requests from now on use the new one. */
  protected replace(value: string): void {
    this.#value = value;
    LIVE.add(value);
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return '[redacted]';
  }
}

/**
 * A key read from a mounted Kubernetes Secret, re-read when the file changes (the kubelet swaps a
 * symlink; polling the path's stat catches that where inotify on the old inode would not).
 * A rotated key therefore heals a model marked unhealthy by 401s, through its next probe.
 */
export class FileSecret extends Secret {
  readonly #path: string;
  readonly #parse: (raw: string) => string;
  readonly #listener: (cur: Stats) => void;
  #rejected: string | undefined;

  /**
   * `parse` turns the file's content into the key, and throws (with a message that never quotes
   * the content) for content that must not replace the key in use: the old key then stays.
   */
  constructor(path: string, value: string, parse: (raw: string) => string, pollMs: number) {
    super(value);
    this.#path = path;
    this.#parse = parse;
    this.#listener = (cur) => {
      if (cur.mtimeMs === 0) return; // removed for a moment during the swap: keep the old key
      let raw: string;
      try {
        raw = readFileSync(this.#path, 'utf8');
      } catch {
        return; // unreadable mid-swap: the next change or poll reads it
      }
      let next: string;
      try {
        next = this.#parse(raw);
      } catch (err) {
        // invalid content (two lines, a control character): the old key keeps serving
        this.#rejected = redact(err instanceof Error ? err.message : String(err));
        return;
      }
      if (!next) return;
      this.#rejected = undefined;
      this.replace(next);
    };
    watchFile(path, { interval: pollMs, persistent: false }, this.#listener);
  }

  /** Why the file's latest content was refused (the old key is still in use); undefined when it was not. */
  get rejected(): string | undefined {
    return this.#rejected;
  }

  close(): void {
    unwatchFile(this.#path, this.#listener);
  }
}
