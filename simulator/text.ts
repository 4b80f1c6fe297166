/** Small text helpers shared by the simulated providers: ids, token estimates, chunking. */
import { randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** `prefix` + `length` random alphanumerics, e.g. randomId('msg_', 24). */
export function randomId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let id = prefix;
  for (const b of bytes) id += ALPHABET[b % ALPHABET.length];
  return id;
}

/** Rough token count: about four characters per token, at least one for non-empty text. */
export function roughTokens(text: string): number {
  return text.length === 0 ? 0 : Math.max(1, Math.ceil(text.length / 4));
}

/** Splits text into stream-sized pieces: word by word when short, 4 KiB slices when long. */
export function splitText(text: string): string[] {
  if (text.length === 0) return [];
  if (text.length > 1024) {
    const pieces: string[] = [];
    for (let i = 0; i < text.length; i += 4096) pieces.push(text.slice(i, i + 4096));
    return pieces;
  }
  return text.split(/(?=\s)/);
}

/** Splits a tool-call argument string into (up to) three fragments, as providers stream them. */
export function splitArguments(args: string): string[] {
  if (args.length < 3) return args.length ? [args] : [];
  const third = Math.ceil(args.length / 3);
  return [args.slice(0, third), args.slice(third, 2 * third), args.slice(2 * third)].filter((s) => s.length > 0);
}

/** About `bytes` bytes of plausible completion text. */
export function fillerText(bytes: number): string {
  const sentence = 'The quick brown fox jumps over the lazy dog. ';
  const n = Math.max(1, Math.floor(bytes));
  return sentence.repeat(Math.ceil(n / sentence.length)).slice(0, n);
}

export interface JsonStyle {
  /** 'spaced': `", "` and `": "` between items, as Python's json.dumps writes them. */
  spacing?: 'compact' | 'spaced';
  /** 'reversed': every object's keys in reverse order. */
  keyOrder?: 'openai' | 'reversed';
}

/** JSON text of `value` in a server's style; compact and in order is JSON.stringify itself. */
export function serializeJson(value: unknown, style: JsonStyle = {}): string {
  const spaced = style.spacing === 'spaced';
  const reversed = style.keyOrder === 'reversed';
  if (!spaced && !reversed) return JSON.stringify(value);
  const comma = spaced ? ', ' : ',';
  const colon = spaced ? ': ' : ':';
  const write = (v: unknown): string | undefined => {
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map((x) => write(x) ?? 'null').join(comma)}]`;
    const entries = Object.entries(v as Record<string, unknown>);
    if (reversed) entries.reverse();
    const items: string[] = [];
    for (const [k, x] of entries) {
      const text = write(x);
      if (text !== undefined) items.push(`${JSON.stringify(k)}${colon}${text}`);
    }
    return `{${items.join(comma)}}`;
  };
  return write(value) ?? 'null';
}
