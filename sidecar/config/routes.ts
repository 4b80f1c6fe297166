/**
 * Which Backend serves a path: the HTTPRoute rules in order (Exact before PathPrefix before
 * RegularExpression, longest prefix first, as Gateway API orders matches), then the default
 * `/v1/chat/completions` route.
 *
 * RegularExpression matches are RE2 (re2js), as in Envoy and other Gateway API implementations:
 * linear in the path's length whatever the pattern, so a path the client chooses cannot make a
 * pattern backtrack. The whole path must match, and a path longer than MAX_REGEX_PATH never
 * matches a regex route.
 */
import { RE2JS } from 're2js';
import type { BackendPlan, RoutePlan } from './plan.ts';

/** Paths longer than this (characters) never match a RegularExpression route. */
export const MAX_REGEX_PATH = 8 * 1024;

/**
 * A route's pattern, compiled by RE2. Throws (RE2JSSyntaxException) for what RE2 does not
 * accept: backreferences, lookaheads and lookbehinds, repeats over 1000. The loader calls this
 * to validate, so a router never meets a pattern that does not compile.
 */
export function compileRouteRegex(pattern: string): RE2JS {
  // the pattern alone first: wrapped, "a)|(b" would compile although it is not a pattern
  RE2JS.compile(pattern);
  return RE2JS.compile(`(?:${pattern})`);
}

export interface Router {
  match(path: string): RoutePlan | undefined;
}

const RANK = { Exact: 0, PathPrefix: 1, RegularExpression: 2 } as const;

export function createRouter(routes: RoutePlan[]): Router {
  const ordered = [...routes].sort((a, b) => RANK[a.match.type] - RANK[b.match.type] || b.match.value.length - a.match.value.length);
  const compiled = ordered.map((route) => ({ route, test: matcher(route) }));
  return {
    match(path: string) {
      for (const c of compiled) if (c.test(path)) return c.route;
      return undefined;
    },
  };
}

function matcher(route: RoutePlan): (path: string) => boolean {
  const { type, value } = route.match;
  if (type === 'Exact') return (p) => p === value;
  if (type === 'RegularExpression') {
    const re = compileRouteRegex(value);
    return (p) => p.length <= MAX_REGEX_PATH && re.testExact(p);
  }
  // Gateway API PathPrefix matches whole path elements: /model matches /model and /model/x, not /models.
  const prefix = value.endsWith('/') && value.length > 1 ? value.slice(0, -1) : value;
  if (prefix === '/') return () => true;
  return (p) => p === prefix || (p.startsWith(prefix) && p.charCodeAt(prefix.length) === 47);
}

export function backendsOf(routes: RoutePlan[]): BackendPlan[] {
  return [...new Set(routes.map((r) => r.backend))];
}
