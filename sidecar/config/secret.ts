import { inspect } from 'node:util';

/**
 * An API key, redacted by construction: it prints, serialises and inspects as "[redacted]",
 * so no log line, span, error message or /status output can carry it by accident.
 * Only the upstream request builder calls reveal().
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
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
