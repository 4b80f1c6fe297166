/**
 * An OpenAI chat-completions request body as an Anthropic Messages request body. Pure: JSON in,
 * JSON out. Every field's fate (mapped, approximated, dropped) is in docs/translation.md; a field
 * with no equivalent is left out, never turned into something else.
 */

/** `max_tokens` when the client set neither `max_tokens` nor `max_completion_tokens` (Anthropic requires one). */
export const DEFAULT_MAX_TOKENS = 4096;

/** `reasoning_effort` as an extended-thinking budget, added on top of the answer's `max_tokens`. */
export const THINKING_BUDGET: Record<string, number> = { low: 1024, medium: 4096, high: 16384, xhigh: 32768 };

/** The key an assistant tool call's `arguments` go under when they are not a JSON object. */
export const RAW_ARGUMENTS_KEY = '_raw_arguments';

type Json = Record<string, unknown>;
type Block = Json;
type Role = 'user' | 'assistant';
interface Turn {
  role: Role;
  content: Block[];
}

export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Anthropic ids match ^[a-zA-Z0-9_-]+$. A valid id goes as it is; any other has each character
 * outside the pattern replaced by `_` and a short hash of the original appended, so ids that
 * differ only there (`call.1`, `call:1`) stay distinct. The mapping is a pure function of the
 * id, the same for tool_use and tool_result, so pairs stay paired.
 */
export function toolUseId(id: unknown): string {
  if (typeof id !== 'string') return '';
  if (/^[a-zA-Z0-9_-]+$/.test(id)) return id;
  // FNV-1a over the UTF-16 units: 32 bits is plenty to tell a handful of ids in one request apart
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return `${id.replace(/[^a-zA-Z0-9_-]/g, '_')}_${hash.toString(36)}`;
}

function text(value: string): Block[] {
  // Anthropic rejects empty and whitespace-only text blocks.
  return value.trim() === '' ? [] : [{ type: 'text', text: value }];
}

/** The text of a string or an array of `text` (and `refusal`) parts. */
function textBlocks(content: unknown): Block[] {
  if (typeof content === 'string') return text(content);
  if (!Array.isArray(content)) return [];
  const out: Block[] = [];
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (part.type === 'text' && typeof part.text === 'string') out.push(...text(part.text));
    else if (part.type === 'refusal' && typeof part.refusal === 'string') out.push(...text(part.refusal));
  }
  return out;
}

interface DataUrl {
  mediaType: string;
  base64: string;
}

function parseDataUrl(url: string): DataUrl | undefined {
  if (!url.startsWith('data:')) return undefined;
  const comma = url.indexOf(',');
  if (comma === -1) return undefined;
  const params = url.slice(5, comma).split(';');
  const payload = url.slice(comma + 1);
  const mediaType = params[0] || 'text/plain';
  if (params.includes('base64')) return { mediaType, base64: payload };
  let decoded: string;
  try {
    decoded = decodeURIComponent(payload);
  } catch {
    decoded = payload;
  }
  return { mediaType, base64: Buffer.from(decoded, 'utf8').toString('base64') };
}

function imageBlock(imageUrl: unknown): Block[] {
  const url = isRecord(imageUrl) ? imageUrl.url : imageUrl;
  if (typeof url !== 'string' || url === '') return [];
  const data = parseDataUrl(url);
  if (data) return [{ type: 'image', source: { type: 'base64', media_type: data.mediaType, data: data.base64 } }];
  return [{ type: 'image', source: { type: 'url', url } }];
}

/** A `file` part with inline `file_data` (PDF or plain text) as a document block; a `file_id` has no equivalent. */
function documentBlock(file: unknown): Block[] {
  if (!isRecord(file) || typeof file.file_data !== 'string') return [];
  const data = parseDataUrl(file.file_data);
  if (!data) return [];
  const title = typeof file.filename === 'string' && file.filename !== '' ? { title: file.filename } : {};
  if (data.mediaType === 'application/pdf')
    return [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: data.base64 }, ...title }];
  if (data.mediaType === 'text/plain') {
    return [
      {
        type: 'document',
        source: { type: 'text', media_type: 'text/plain', data: Buffer.from(data.base64, 'base64').toString('utf8') },
        ...title,
      },
    ];
  }
  return [];
}

function userBlocks(content: unknown): Block[] {
  if (typeof content === 'string') return text(content);
  if (!Array.isArray(content)) return [];
  const out: Block[] = [];
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (part.type === 'text' && typeof part.text === 'string') out.push(...text(part.text));
    else if (part.type === 'image_url') out.push(...imageBlock(part.image_url));
    else if (part.type === 'file') out.push(...documentBlock(part.file));
    // input_audio and anything else: no equivalent, left out
  }
  return out;
}

/** An assistant tool call's `arguments` (a JSON string) as tool_use `input` (an object). */
export function toolInput(args: unknown): Json {
  if (isRecord(args)) return args;
  if (typeof args !== 'string' || args.trim() === '') return {};
  try {
    const parsed: unknown = JSON.parse(args);
    if (isRecord(parsed)) return parsed;
  } catch {
    // not JSON: kept verbatim below
  }
  // Not a JSON object (often cut short by a length stop): Anthropic needs an object, the model should still see what it sent.
  return { [RAW_ARGUMENTS_KEY]: args };
}

function toolResultContent(content: unknown): string | Block[] | undefined {
  if (typeof content === 'string') return content === '' ? undefined : content;
  const blocks = textBlocks(content);
  return blocks.length > 0 ? blocks : undefined;
}

interface Converted {
  system: Block[];
  turns: Turn[];
}

function convertMessages(messages: unknown[]): Converted {
  const system: Block[] = [];
  const turns: Turn[] = [];
  const add = (role: Role, content: Block[]) => {
    if (content.length === 0) return;
    const last = turns[turns.length - 1];
    // Anthropic requires alternation: consecutive same-role turns become one.
    if (last && last.role === role) last.content.push(...content);
    else turns.push({ role, content });
  };
  // Legacy function calls carry no id: each gets one, and the `function` message after it answers it.
  let legacyCalls = 0;
  let lastLegacyId = '';

  for (const m of messages) {
    if (!isRecord(m)) continue;
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(...textBlocks(m.content));
        break;
      case 'user':
        add('user', userBlocks(m.content));
        break;
      case 'assistant': {
        const blocks = textBlocks(m.content);
        if (Array.isArray(m.tool_calls)) {
          for (const call of m.tool_calls) {
            if (!isRecord(call) || !isRecord(call.function)) continue;
            blocks.push({
              type: 'tool_use',
              id: toolUseId(call.id),
              name: String(call.function.name ?? ''),
              input: toolInput(call.function.arguments),
            });
          }
        }
        if (isRecord(m.function_call)) {
          lastLegacyId = `call_fn${++legacyCalls}`;
          blocks.push({
            type: 'tool_use',
            id: lastLegacyId,
            name: String(m.function_call.name ?? ''),
            input: toolInput(m.function_call.arguments),
          });
        }
        add('assistant', blocks);
        break;
      }
      case 'tool': {
        const content = toolResultContent(m.content);
        add('user', [{ type: 'tool_result', tool_use_id: toolUseId(m.tool_call_id), ...(content === undefined ? {} : { content }) }]);
        break;
      }
      case 'function': {
        const content = toolResultContent(m.content);
        add('user', [{ type: 'tool_result', tool_use_id: lastLegacyId, ...(content === undefined ? {} : { content }) }]);
        break;
      }
      // any other role: no equivalent, left out
    }
  }

  for (const turn of turns) {
    // Tool results must open the user turn that follows the tool calls.
    if (turn.role === 'user' && turn.content.some((b) => b.type === 'tool_result')) {
      turn.content = [...turn.content.filter((b) => b.type === 'tool_result'), ...turn.content.filter((b) => b.type !== 'tool_result')];
    }
  }
  if (turns.length === 0 && system.length > 0) {
    // Only instructions: Anthropic needs a user turn, so they become it.
    turns.push({ role: 'user', content: system.splice(0) });
  } else if (turns[0]?.role === 'assistant') {
    // Anthropic wants the user to speak first (an assistant greeting is common): a minimal user turn opens.
    turns.unshift({ role: 'user', content: [{ type: 'text', text: '.' }] });
  }
  const last = turns[turns.length - 1];
  if (last?.role === 'assistant') {
    // A final assistant turn is a prefill; Anthropic rejects one that ends in whitespace.
    const tail = last.content[last.content.length - 1];
    if (tail.type === 'text' && typeof tail.text === 'string') tail.text = tail.text.trimEnd();
  }
  return { system, turns };
}

function jsonInstruction(format: unknown): string | undefined {
  if (!isRecord(format)) return undefined;
  if (format.type === 'json_object') return 'Answer with a single valid JSON object and nothing else: no prose, no Markdown code fences.';
  if (format.type === 'json_schema' && isRecord(format.json_schema)) {
    const s = format.json_schema;
    const name = typeof s.name === 'string' ? ` "${s.name}"` : '';
    const description = typeof s.description === 'string' ? ` (${s.description})` : '';
    return `Answer with a single valid JSON value that conforms to the JSON Schema${name}${description} below, and nothing else: no prose, no Markdown code fences.\n${JSON.stringify(s.schema ?? {})}`;
  }
  return undefined;
}

function convertTools(json: Json): Block[] | undefined {
  const tools: Block[] = [];
  const add = (fn: Json) => {
    if (typeof fn.name !== 'string') return;
    tools.push({
      name: fn.name,
      ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
      input_schema: isRecord(fn.parameters) ? fn.parameters : { type: 'object', properties: {} },
    });
  };
  if (Array.isArray(json.tools)) {
    for (const t of json.tools) if (isRecord(t) && t.type === 'function' && isRecord(t.function)) add(t.function);
  } else if (Array.isArray(json.functions)) {
    for (const f of json.functions) if (isRecord(f)) add(f);
  }
  return tools.length > 0 ? tools : undefined;
}

/** The request uses the deprecated `functions` / `function_call` instead of `tools`: answers come back in the same style. */
export function isLegacyFunctions(json: Json): boolean {
  return !Array.isArray(json.tools) && Array.isArray(json.functions) && json.functions.length > 0;
}

function convertToolChoice(json: Json, legacy: boolean): Json | undefined {
  const choice = legacy ? json.function_call : json.tool_choice;
  let out: Json | undefined;
  if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'required') out = { type: 'any' };
  else if (choice === 'none') out = { type: 'none' };
  else if (isRecord(choice)) {
    if (choice.type === 'function' && isRecord(choice.function) && typeof choice.function.name === 'string')
      out = { type: 'tool', name: choice.function.name };
    else if (legacy && typeof choice.name === 'string') out = { type: 'tool', name: choice.name };
    else if (choice.type === 'allowed_tools' && isRecord(choice.allowed_tools))
      out = { type: choice.allowed_tools.mode === 'required' ? 'any' : 'auto' };
  }
  // One call at a time: asked for, or implied by the legacy single `function_call`.
  if ((json.parallel_tool_calls === false || legacy) && out?.type !== 'none')
    out = { ...(out ?? { type: 'auto' }), disable_parallel_tool_use: true };
  return out;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

/** The Anthropic Messages body for one model. */
export function anthropicRequest(json: Json, model: string | undefined, stream: boolean): Json {
  const { system, turns } = convertMessages(Array.isArray(json.messages) ? json.messages : []);
  const instruction = jsonInstruction(json.response_format);
  if (instruction) system.push({ type: 'text', text: instruction });

  const legacy = isLegacyFunctions(json);
  const tools = convertTools(json);
  const toolChoice = tools ? convertToolChoice(json, legacy) : undefined;

  let maxTokens = numberOr(json.max_completion_tokens, numberOr(json.max_tokens, DEFAULT_MAX_TOKENS));
  let temperature = typeof json.temperature === 'number' ? Math.min(1, Math.max(0, json.temperature)) : undefined;
  let topP = typeof json.top_p === 'number' ? json.top_p : undefined;

  let thinking: Json | undefined;
  const effort = json.reasoning_effort;
  // own keys only: a reasoning_effort of "valueOf" or "__proto__" is no budget
  const budget = typeof effort === 'string' && Object.hasOwn(THINKING_BUDGET, effort) ? THINKING_BUDGET[effort] : undefined;
  const forcedTool = toolChoice?.type === 'any' || toolChoice?.type === 'tool';
  const lastAssistant = turns.findLast((t) => t.role === 'assistant');
  const midToolLoop = lastAssistant?.content.some((b) => b.type === 'tool_use') ?? false;
  // Anthropic refuses thinking with a forced tool, and mid tool loop without the earlier thinking
  // blocks (which OpenAI clients never hold): there the answer comes without extended thinking.
  if (budget !== undefined && !forcedTool && !midToolLoop) {
    thinking = { type: 'enabled', budget_tokens: budget };
    maxTokens += budget;
    temperature = undefined; // thinking accepts only the default temperature
    if (topP !== undefined && topP < 0.95) topP = undefined;
  }

  const stops =
    typeof json.stop === 'string'
      ? json.stop === ''
        ? []
        : [json.stop]
      : Array.isArray(json.stop)
        ? json.stop.filter((s): s is string => typeof s === 'string' && s !== '')
        : [];
  const userId =
    typeof json.user === 'string' && json.user !== ''
      ? json.user
      : typeof json.safety_identifier === 'string' && json.safety_identifier !== ''
        ? json.safety_identifier
        : undefined;

  // Anthropic rejects an empty conversation as the client's fault; another provider may take it
  if (turns.length === 0) throw new Error('nothing in the request is a message Anthropic can take');
  const body: Json = { model, max_tokens: maxTokens };
  if (system.length === 1) body.system = system[0].text;
  else if (system.length > 1) body.system = system;
  body.messages = turns;
  if (tools) body.tools = tools;
  if (toolChoice) body.tool_choice = toolChoice;
  if (thinking) body.thinking = thinking;
  if (temperature !== undefined) body.temperature = temperature;
  if (topP !== undefined) body.top_p = topP;
  if (stops.length > 0) body.stop_sequences = stops;
  if (userId !== undefined) body.metadata = { user_id: userId };
  if (stream) body.stream = true;
  return body;
}
