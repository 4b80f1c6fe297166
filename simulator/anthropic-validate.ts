/**
 * The Messages API's request rules, as strictly as Anthropic applies them, with its own error
 * messages: a translation that breaks one gets the 400 the real API would send, so a regression
 * fails a test instead of passing against a lenient simulator.
 *
 * What Anthropic accepts that one might expect it to refuse: consecutive turns of the same role
 * (it merges them into one turn), and an empty final assistant turn (a prefill of nothing).
 */
import { isRecord } from './dialect.ts';

const ID = /^[a-zA-Z0-9_-]+$/;
const THINKING_DOCS = 'Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking';

type Block = Record<string, unknown>;

function validateSystem(system: unknown): string | undefined {
  if (system === undefined || typeof system === 'string') return undefined;
  if (!Array.isArray(system)) return 'system: Input should be a valid list';
  for (const [i, block] of system.entries()) {
    if (!isRecord(block) || block.type !== 'text') return `system.${i}.type: Input should be 'text'`;
    if (typeof block.text !== 'string') return `system.${i}.text: Input should be a valid string`;
    if (block.text === '') return 'system: text content blocks must be non-empty';
  }
  return undefined;
}

/** One content block's own shape (its place in the conversation is checked later). */
function validateBlock(block: unknown, at: string): string | undefined {
  if (!isRecord(block)) return `${at}: Input should be a valid dictionary or object to extract fields from`;
  if (typeof block.type !== 'string') return `${at}: Unable to extract tag using discriminator 'type'`;
  switch (block.type) {
    case 'text':
      if (typeof block.text !== 'string') return `${at}.text.text: Input should be a valid string`;
      if (block.text === '') return 'messages: text content blocks must be non-empty';
      if (block.text.trim() === '') return 'messages: text content blocks must contain non-whitespace text';
      return undefined;
    case 'tool_use':
      if (typeof block.id !== 'string' || !ID.test(block.id)) return `${at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'`;
      if (typeof block.name !== 'string' || block.name === '') return `${at}.tool_use.name: String should have at least 1 character`;
      if (!isRecord(block.input)) return `${at}.tool_use.input: Input should be a valid dictionary`;
      return undefined;
    case 'tool_result':
      if (typeof block.tool_use_id !== 'string' || !ID.test(block.tool_use_id))
        return `${at}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'`;
      if (block.content !== undefined && typeof block.content !== 'string') {
        if (!Array.isArray(block.content)) return `${at}.tool_result.content: Input should be a valid list`;
        for (const [k, inner] of block.content.entries()) {
          const problem = validateBlock(inner, `${at}.tool_result.content.${k}`);
          if (problem) return problem;
        }
      }
      return undefined;
    default:
      return undefined;
  }
}

/** A message's content as blocks (a string is one text block). */
function blocksOf(content: unknown): Block[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : (content as Block[]);
}

function validateMessages(messages: unknown): string | undefined {
  if (messages === undefined) return 'messages: Field required';
  if (!Array.isArray(messages)) return 'messages: Input should be a valid list';
  if (messages.length === 0) return 'messages: at least one message is required';
  for (const [i, m] of messages.entries()) {
    if (!isRecord(m)) return `messages.${i}: Input should be a valid dictionary`;
    if (m.role !== 'user' && m.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (m.content === undefined) return `messages.${i}.content: Field required`;
    if (typeof m.content !== 'string' && !Array.isArray(m.content)) return `messages.${i}.content: Input should be a valid list`;
    if (i === 0 && m.role !== 'user') return 'messages: first message must use the "user" role';
    const finalAssistant = i === messages.length - 1 && m.role === 'assistant';
    const empty = typeof m.content === 'string' ? m.content === '' : m.content.length === 0;
    if (empty && !finalAssistant)
      return `messages.${i}: all messages must have non-empty content except for the optional final assistant message`;
    if (typeof m.content === 'string') {
      if (m.content !== '' && m.content.trim() === '') return 'messages: text content blocks must contain non-whitespace text';
    } else {
      for (const [j, block] of m.content.entries()) {
        const problem = validateBlock(block, `messages.${i}.content.${j}`);
        if (problem) return problem;
      }
    }
  }

  // Consecutive messages of one role are merged into one turn, as Anthropic does, then the
  // turns are checked against each other: tool results answer the turn before, tool uses are
  // answered in the turn after.
  const turns: { role: string; index: number; blocks: Block[] }[] = [];
  for (const [i, m] of messages.entries()) {
    const last = turns.at(-1);
    if (last && last.role === m.role) last.blocks.push(...blocksOf(m.content));
    else turns.push({ role: m.role, index: i, blocks: [...blocksOf(m.content)] });
  }
  const seen = new Set<unknown>();
  for (const turn of turns) {
    for (const [j, b] of turn.blocks.entries()) {
      if (b.type !== 'tool_use') continue;
      if (seen.has(b.id)) return `messages.${turn.index}.content.${j}: \`tool_use\` ids must be unique`;
      seen.add(b.id);
    }
  }
  for (const [k, turn] of turns.entries()) {
    const results = turn.blocks.filter((b) => b.type === 'tool_result');
    if (turn.role === 'assistant' && results.length > 0) return `messages.${turn.index}: tool_result blocks can only be in user messages`;
    if (turn.role === 'user' && results.length > 0) {
      const firstOther = turn.blocks.findIndex((b) => b.type !== 'tool_result');
      if (firstOther !== -1 && turn.blocks.slice(firstOther).some((b) => b.type === 'tool_result')) {
        return `messages.${turn.index}: tool_result blocks must come first in a user message, before any other content`;
      }
      const previous = turns[k - 1];
      const uses = new Set((previous?.blocks ?? []).filter((b) => b.type === 'tool_use').map((b) => b.id));
      for (const r of results) {
        if (!uses.has(r.tool_use_id)) {
          return `messages.${turn.index}.content.0: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${String(r.tool_use_id)}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`;
        }
      }
    }
  }
  for (const [k, turn] of turns.entries()) {
    const next = turns[k + 1];
    if (turn.role === 'assistant' && next) {
      const answered = new Set(next.blocks.filter((b) => b.type === 'tool_result').map((b) => b.tool_use_id));
      const missing = turn.blocks.filter((b) => b.type === 'tool_use' && !answered.has(b.id)).map((b) => String(b.id));
      if (missing.length > 0) {
        return `messages.${next.index}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
      }
    }
  }
  const last = turns.at(-1);
  if (last?.role === 'assistant') {
    const tail = last.blocks.at(-1);
    if (tail?.type === 'text' && typeof tail.text === 'string' && tail.text !== tail.text.trimEnd()) {
      return 'messages: final assistant content cannot end with trailing whitespace';
    }
  }
  return undefined;
}

/** Extended thinking and what it rules out. */
function validateThinking(body: Record<string, unknown>): string | undefined {
  const thinking = body.thinking;
  if (thinking === undefined) return undefined;
  if (!isRecord(thinking) || (thinking.type !== 'enabled' && thinking.type !== 'disabled')) {
    return "thinking: Input tag does not match any of the expected tags: 'disabled', 'enabled'";
  }
  if (thinking.type === 'disabled') return undefined;
  const budget = thinking.budget_tokens;
  if (typeof budget !== 'number' || !Number.isInteger(budget)) return 'thinking.enabled.budget_tokens: Input should be a valid integer';
  if (budget < 1024) return 'thinking.enabled.budget_tokens: Input should be greater than or equal to 1024';
  if (typeof body.max_tokens === 'number' && budget >= body.max_tokens) {
    return `\`max_tokens\` must be greater than \`thinking.budget_tokens\`. ${THINKING_DOCS}#max-tokens-and-context-window-size`;
  }
  if (body.temperature !== undefined && body.temperature !== 1) {
    return `\`temperature\` may only be set to 1 when thinking is enabled. ${THINKING_DOCS}#feature-compatibility`;
  }
  if (body.top_p !== undefined && !(typeof body.top_p === 'number' && body.top_p >= 0.95)) {
    return `\`top_p\` must be greater than or equal to 0.95 or unset when thinking is enabled. ${THINKING_DOCS}#feature-compatibility`;
  }
  if (body.top_k !== undefined) return `\`top_k\` must be unset when thinking is enabled. ${THINKING_DOCS}#feature-compatibility`;
  const choice = body.tool_choice;
  if (isRecord(choice) && (choice.type === 'any' || choice.type === 'tool')) {
    return `Thinking may not be enabled when tool_choice forces tool use. ${THINKING_DOCS}#extended-thinking-with-tool-use`;
  }
  // in a tool loop the last assistant turn must hand its thinking back, ahead of its tool use
  const messages = Array.isArray(body.messages) ? (body.messages as Record<string, unknown>[]) : [];
  const lastAssistant = messages.findLastIndex((m) => m.role === 'assistant');
  if (lastAssistant !== -1) {
    const blocks = blocksOf(messages[lastAssistant].content);
    const first = blocks[0];
    if (blocks.some((b) => b.type === 'tool_use') && first?.type !== 'thinking' && first?.type !== 'redacted_thinking') {
      return `messages.${lastAssistant}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${String(first?.type)}\`. When \`thinking\` is enabled, a final \`assistant\` message must start with a thinking block (preceeding the lastmost set of \`tool_use\` and \`tool_result\` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable \`thinking\`. ${THINKING_DOCS}`;
    }
  }
  return undefined;
}

/** The message of the 400 Anthropic would answer `body` with, or undefined when it takes it. */
export function anthropicRequestProblem(body: unknown): string | undefined {
  if (!isRecord(body)) return 'Input should be a valid dictionary';
  if (body.model === undefined) return 'model: Field required';
  if (typeof body.model !== 'string') return 'model: Input should be a valid string';
  if (body.max_tokens === undefined) return 'max_tokens: Field required';
  if (typeof body.max_tokens !== 'number' || !Number.isInteger(body.max_tokens)) return 'max_tokens: Input should be a valid integer';
  if (body.max_tokens < 1) return 'max_tokens: Input should be greater than or equal to 1';
  if (body.temperature !== undefined) {
    if (typeof body.temperature !== 'number') return 'temperature: Input should be a valid number';
    if (body.temperature < 0) return 'temperature: Input should be greater than or equal to 0';
    if (body.temperature > 1) return 'temperature: Input should be less than or equal to 1';
  }
  if (body.top_p !== undefined && (typeof body.top_p !== 'number' || body.top_p < 0 || body.top_p > 1))
    return 'top_p: Input should be less than or equal to 1';
  if (
    body.stop_sequences !== undefined &&
    (!Array.isArray(body.stop_sequences) || body.stop_sequences.some((s) => typeof s !== 'string'))
  ) {
    return 'stop_sequences: Input should be a valid list';
  }
  return validateMessages(body.messages) ?? validateSystem(body.system) ?? validateThinking(body);
}
