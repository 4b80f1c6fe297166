/**
 * Which Backend serves a path: the HTTPRoute rules in order (Exact before PathPrefix before
 * RegularExpression, longest prefix first, as Gateway API orders matches), then the default
 * `/v1/chat/completions` route.
 */
import type { BackendPlan, RoutePlan } from '../config/plan.ts';

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
    const re = new RegExp(`^(?:${value})$`);
    return (p) => re.test(p);
  }
  // Gateway API PathPrefix matches whole path elements: /model matches /model and /model/x, not /models.
  const prefix = value.endsWith('/') && value.length > 1 ? value.slice(0, -1) : value;
  if (prefix === '/') return () => true;
  return (p) => p === prefix || (p.startsWith(prefix) && p.charCodeAt(prefix.length) === 47);
}

export function backendsOf(routes: RoutePlan[]): BackendPlan[] {
  return [...new Set(routes.map((r) => r.backend))];
}
