// Chat templates: a checkpoint's own Jinja template turns a conversation into prompt text exactly as Hugging Face's
// `apply_chat_template(messages, tokenize=False, ...)` does. The template runs on @huggingface/jinja (a real Jinja
// implementation in JS) set up the way transformers sets up jinja2 (src/transformers/utils/chat_template_utils.py,
// _compile_jinja_template, and tokenization_utils_base.py, apply_chat_template):
//   - environment: ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks on (both always on in
//     @huggingface/jinja); the loopcontrols extension ({% break %}, {% continue %});
//   - `tojson` without HTML escaping, ensure_ascii false, Python's default separators (", ", ": "), with the
//     indent/separators/sort_keys arguments (the library's tojson does this);
//   - globals: raise_exception(message) (raises; surfaced here as ChatTemplateError 'raised' naming the file) and
//     strftime_now(format) (Python strftime on the local clock; `now` overrides it for reproducible prompts);
//   - variables: messages, tools (None unless given: `{% if tools %}` is false, `tools is none` true,
//     `tools is defined` true, as in HF), documents (same), add_generation_prompt, then HF's special_tokens_map from
//     tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, ..., additional_special_tokens: only the
//     ones that are set, as strings), then caller variables, which override the special tokens as HF's kwargs do;
//   - the {% generation %} ... {% endgeneration %} block (HF's AssistantTracker extension, used by LLaVA templates):
//     with tokenize=False it renders its body unchanged, which is what this does;
//   - continue_final_message: the text is cut right after the final message's content, as HF does.
//
// Where the template comes from, first found wins (what HF's loaders read for a tokenizer or processor folder):
//   DIR/chat_template.jinja, DIR/chat_template.json ({"chat_template": ...}), DIR/tokenizer_config.json
//   ("chat_template": a string, or a list of {"name", "template"} from which "default" is used, or "tool_use" when
//   tools are given and the caller names none).
//
// Messages are passed to the template as they are: content may be a string, or a list of parts such as
// {type: 'text', text} and {type: 'image'} (multimodal templates iterate over the parts and write their image
// placeholder, e.g. LLaVA-OneVision's `<image>`); extra fields (tool_calls, name, ...) reach the template too.
// Values that are not JSON-like (an image part's pixels, a Buffer) reach it as a marker string such as
// "[Uint8Array]": templates test for the key, never read the pixels.
//
// Checked against Python's jinja2 set up this way (test/text/gen_chat_goldens.py → test/fixtures/chat/): the real
// Qwen2.5 template and the Qwen2-Instruct, LLaVA-OneVision, Qwen2-VL and Llama-2-style templates render to the same
// text and the same token ids. Known divergences of @huggingface/jinja from jinja2, none of which the published
// templates above rely on: a boolean printed directly is true/false (jinja2: True/False), none printed directly is
// '' (jinja2: None), and a JS number has no int/float distinction (a float 2.0 given by the caller prints as 2).

import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { FormatError, LaviError, ValueError } from '../../core/errors.js';
import type { Tokenizer } from './tokenizer.js';
import { parseTokenizerConfig, readJsonSync, readTextSync, type NamedChatTemplate, type SpecialTokensMap } from './tokenizer-config.js';
import { nodeFs, nodePath } from '../../core/platform.js';

/** Why a chat template could not give a prompt. */
export type ChatTemplateFailure = 'missing' | 'syntax' | 'raised' | 'render';

/**
 * A chat template that is missing, does not parse, raises (raise_exception) or fails while rendering. `file` is
 * the file the template came from (undefined for a template given as a string).
 */
export class ChatTemplateError extends LaviError {
  readonly reason: ChatTemplateFailure;
  readonly file: string | undefined;
  constructor(reason: ChatTemplateFailure, message: string, file?: string) {
    super('chat-template', message);
    this.reason = reason;
    this.file = file;
  }
}

export interface ChatTextPart {
  type: 'text';
  text: string;
}
/** An image slot: the template writes the model's image placeholder; the pixels travel separately. */
export interface ChatImagePart {
  type: 'image';
  [key: string]: unknown;
}
export type ChatContentPart = ChatTextPart | ChatImagePart | { type: string; [key: string]: unknown };

export interface ChatMessage {
  role: string;
  /** Text, or a list of parts (multimodal templates); null/absent for e.g. an assistant message with tool calls. */
  content?: string | readonly ChatContentPart[] | null;
  [key: string]: unknown;
}

export interface ChatRenderOptions {
  /** End with the header of an assistant turn (HF add_generation_prompt). Default false, as HF. */
  addGenerationPrompt?: boolean;
  /** Leave the final message open so the model continues it (HF continue_final_message). Default false. */
  continueFinalMessage?: boolean;
  /** Tool schemas (HF tools); default None. */
  tools?: readonly unknown[] | null;
  /** Documents for retrieval templates (HF documents); default None. */
  documents?: readonly unknown[] | null;
  /** Further template variables (HF **kwargs, e.g. enable_thinking); they override the special tokens. */
  variables?: Record<string, unknown>;
  /** Which of several named templates to use (default: "default", or "tool_use" when tools are given). */
  templateName?: string;
  /** The clock strftime_now reads (default: the current time). */
  now?: Date | (() => Date);
}

// ---------------------------------------------------------------------------------------------------------------
// Python helpers the templates call.

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** Python's datetime.strftime in the C locale (what chat templates ask for: %d %b %Y, %-d, %B, %A, ...). */
export function pyStrftime(date: Date, format: string): string {
  const pad = (n: number, w = 2, c = '0') => String(n).padStart(w, c);
  const dayOfYear = Math.floor((Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) / 86400000) + 1;
  const h12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
  const field = (c: string, noPad: boolean): string | undefined => {
    const p = (n: number, w = 2) => (noPad ? String(n) : pad(n, w));
    switch (c) {
      case 'a': return DAYS[date.getDay()]!.slice(0, 3);
      case 'A': return DAYS[date.getDay()]!;
      case 'b': case 'h': return MONTHS[date.getMonth()]!.slice(0, 3);
      case 'B': return MONTHS[date.getMonth()]!;
      case 'd': return p(date.getDate());
      case 'e': return noPad ? String(date.getDate()) : pad(date.getDate(), 2, ' ');
      case 'm': return p(date.getMonth() + 1);
      case 'y': return p(date.getFullYear() % 100);
      case 'Y': return String(date.getFullYear());
      case 'H': return p(date.getHours());
      case 'I': return p(h12);
      case 'M': return p(date.getMinutes());
      case 'S': return p(date.getSeconds());
      case 'p': return date.getHours() < 12 ? 'AM' : 'PM';
      case 'j': return p(dayOfYear, 3);
      case 'f': return pad(date.getMilliseconds() * 1000, 6);
      case 'w': return String(date.getDay());
      case 'u': return String(date.getDay() === 0 ? 7 : date.getDay());
      case 'F': return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
      case 'D': return `${pad(date.getMonth() + 1)}/${pad(date.getDate())}/${pad(date.getFullYear() % 100)}`;
      case 'T': return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
      case 'R': return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
      case 'n': return '\n';
      case 't': return '\t';
      case '%': return '%';
      default: return undefined;
    }
  };
  return format.replace(/%(-?)(.)/gsu, (whole, dash: string, c: string) => field(c, dash === '-') ?? whole);
}

/** Python's range(stop) / range(start, stop[, step]) over integers. */
function pyRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) (stop = start), (start = 0);
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  if (step > 0) for (let i = start; i < stop; i += step) out.push(i);
  else for (let i = start; i > stop; i += step) out.push(i);
  return out;
}

/** Python's str.strip() whitespace (str.isspace), which is not quite JS's trim(). */
const PY_SPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_LSTRIP = new RegExp(`^[${PY_SPACE}]+`, 'u');
const PY_RSTRIP = new RegExp(`[${PY_SPACE}]+$`, 'u');
const pyLstrip = (s: string) => s.replace(PY_LSTRIP, '');
const pyStrip = (s: string) => s.replace(PY_LSTRIP, '').replace(PY_RSTRIP, '');

/** Thrown by raise_exception inside a render; turned into ChatTemplateError 'raised'. */
class TemplateRaised extends Error {}

/** HF's {% generation %} block renders its body as is when no assistant mask is asked for; @huggingface/jinja does
 *  not know the tag, so it becomes an always-true `if` with the same whitespace control (same trim/lstrip). */
function rewriteGenerationBlocks(src: string): string {
  return src
    .replace(/\{%([-+]?)\s*generation\s*([-+]?)%\}/g, '{%$1 if true $2%}')
    .replace(/\{%([-+]?)\s*endgeneration\s*([-+]?)%\}/g, '{%$1 endif $2%}');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isFile(path: string): boolean {
  try {
    return nodeFs().statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDir(path: string): boolean {
  try {
    return nodeFs().statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function readText(path: string): string {
  return readTextSync(path, '')!;
}

function readJson(path: string): unknown {
  return readJsonSync(path, '');
}

// ---------------------------------------------------------------------------------------------------------------

export class ChatTemplate {
  /** The file the template came from (or the name given to fromString), for messages. */
  readonly source: string;
  /** The template text (the one used by default when the file has several named templates). */
  readonly text: string;
  /** Names of the templates when the file has the list form ([] for a single template). */
  readonly names: readonly string[];
  /** HF's special_tokens_map from tokenizer_config.json: passed to the template as variables. */
  readonly specialTokens: Readonly<SpecialTokensMap>;
  private readonly templates: ReadonlyMap<string, string>;
  private readonly compiled = new Map<string, Template>();
  private readonly file: string | undefined;

  private constructor(source: string, templates: Map<string, string>, specialTokens: SpecialTokensMap, file: string | undefined, isList: boolean) {
    this.source = source;
    this.templates = templates;
    this.specialTokens = specialTokens;
    this.file = file;
    this.names = isList ? [...templates.keys()] : [];
    this.text = templates.get('default') ?? templates.values().next().value ?? '';
    // Parse every template now: a broken file fails at load, not at the first chat turn.
    for (const name of templates.keys()) this.compile(name);
  }

  /**
   * The chat template of a tokenizer or processor folder (chat_template.jinja, chat_template.json or
   * tokenizer_config.json, first found wins), with the special tokens of DIR/tokenizer_config.json. Throws
   * ChatTemplateError 'missing' when the folder has none, 'syntax' when it does not parse.
   */
  static load(dir: string): ChatTemplate {
    const t = ChatTemplate.find(dir);
    if (t) return t;
    const cfg = nodePath().join(dir, 'tokenizer_config.json');
    if (!isDir(dir)) throw new ChatTemplateError('missing', `${dir} is not a directory, so it has no chat template`);
    const where = isFile(cfg) ? `${cfg} has no chat_template` : `${dir} has no tokenizer_config.json, chat_template.jinja or chat_template.json`;
    throw new ChatTemplateError('missing', `${where}, so this model cannot chat; use \`lavi generate --prompt\` for raw text`, isFile(cfg) ? cfg : undefined);
  }

  /** Like load(), but null when the folder has no chat template. */
  static find(dir: string): ChatTemplate | null {
    const cfgPath = nodePath().join(dir, 'tokenizer_config.json');
    let specialTokens: SpecialTokensMap = {};
    let cfgTemplate: string | readonly NamedChatTemplate[] | undefined;
    if (isFile(cfgPath)) {
      const cfg = parseTokenizerConfig(readJson(cfgPath), cfgPath);
      specialTokens = cfg.specialTokens;
      cfgTemplate = cfg.chatTemplate;
    }
    const jinjaPath = nodePath().join(dir, 'chat_template.jinja');
    if (isFile(jinjaPath)) return ChatTemplate.fromString(readText(jinjaPath), { source: jinjaPath, specialTokens, file: jinjaPath });
    const jsonPath = nodePath().join(dir, 'chat_template.json');
    if (isFile(jsonPath)) {
      const obj = readJson(jsonPath);
      const t = isObject(obj) ? obj.chat_template : undefined;
      if (typeof t !== 'string') {
        throw new FormatError(`${jsonPath}: field "chat_template" must be a string, got ${JSON.stringify(t)?.slice(0, 80) ?? 'nothing'}`);
      }
      return ChatTemplate.fromString(t, { source: jsonPath, specialTokens, file: jsonPath });
    }
    if (cfgTemplate === undefined) return null;
    if (typeof cfgTemplate === 'string') return ChatTemplate.fromString(cfgTemplate, { source: cfgPath, specialTokens, file: cfgPath });
    if (cfgTemplate.length === 0) return null;
    return new ChatTemplate(cfgPath, new Map(cfgTemplate.map((t) => [t.name, t.template])), specialTokens, cfgPath, true);
  }

  /** A template given as text; `specialTokens` become variables as tokenizer_config.json's would. */
  static fromString(template: string, opts: { source?: string; specialTokens?: SpecialTokensMap; file?: string } = {}): ChatTemplate {
    if (typeof template !== 'string') throw new ValueError(`chat template ${opts.source ?? ''}: must be a string, got ${typeof template}`);
    return new ChatTemplate(opts.source ?? '<chat template>', new Map([['default', template]]), { ...(opts.specialTokens ?? {}) }, opts.file, false);
  }

  private compile(name: string): Template {
    let t = this.compiled.get(name);
    if (t) return t;
    const src = this.templates.get(name);
    if (src === undefined) {
      throw new ChatTemplateError('missing', `${this.source}: no chat template named ${JSON.stringify(name)} (it has ${this.names.map((n) => JSON.stringify(n)).join(', ')})`, this.file);
    }
    const label = this.names.length ? `${this.source} (template ${JSON.stringify(name)})` : this.source;
    try {
      t = new Template(rewriteGenerationBlocks(src));
    } catch (e) {
      throw new ChatTemplateError('syntax', `${label}: the chat template does not parse: ${(e as Error).message}`, this.file);
    }
    this.compiled.set(name, t);
    return t;
  }

  /** Which named template a render uses. */
  private pick(opts: ChatRenderOptions): string {
    if (opts.templateName !== undefined) return opts.templateName;
    if (!this.names.length) return 'default';
    if (opts.tools && this.templates.has('tool_use')) return 'tool_use';
    if (this.templates.has('default')) return 'default';
    throw new ChatTemplateError('missing', `${this.source}: several chat templates (${this.names.map((n) => JSON.stringify(n)).join(', ')}) and none is named "default"; pick one with templateName`, this.file);
  }

  /** The prompt text for `messages`, as HF's apply_chat_template(messages, tokenize=False, ...) gives it. */
  render(messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): string {
    checkMessages(messages);
    if (opts.addGenerationPrompt && opts.continueFinalMessage) {
      throw new ValueError('chat: addGenerationPrompt and continueFinalMessage cannot both be set (HF refuses this too)');
    }
    const name = this.pick(opts);
    const template = this.compile(name);
    const label = this.names.length ? `${this.source} (template ${JSON.stringify(name)})` : this.source;
    const clock = opts.now;
    // What jinja2 renders with: the environment's globals (HF's raise_exception and strftime_now among them) in an
    // outer scope, and the render call's variables over them.
    const globals = new Environment();
    for (const [k, v] of [['true', true], ['false', false], ['none', null], ['True', true], ['False', false], ['None', null]] as const) globals.set(k, v);
    globals.set('range', pyRange);
    globals.set('raise_exception', (message: unknown) => {
      throw new TemplateRaised(String(message));
    });
    globals.set('strftime_now', (format: unknown) => pyStrftime(clock === undefined ? new Date() : typeof clock === 'function' ? clock() : clock, String(format)));
    const vars: Record<string, unknown> = {
      ...this.specialTokens,
      ...(templateValue(opts.variables ?? {}) as Record<string, unknown>),
      messages: templateValue(messages),
      tools: opts.tools === undefined ? null : templateValue(opts.tools),
      documents: opts.documents === undefined ? null : templateValue(opts.documents),
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
    let text: string;
    try {
      const scope = new Environment(globals);
      for (const [k, v] of Object.entries(vars)) scope.set(k, v);
      const out = new Interpreter(scope).run(template.parsed) as { value: unknown };
      text = String(out.value);
    } catch (e) {
      if (e instanceof TemplateRaised) throw new ChatTemplateError('raised', `${label}: the chat template raised an exception: ${e.message}`, this.file);
      throw new ChatTemplateError('render', `${label}: rendering the chat template failed: ${(e as Error).message}`, this.file);
    }
    return opts.continueFinalMessage ? cutAfterFinalMessage(text, messages, label) : text;
  }

  /** Token ids of the rendered prompt. The template writes the special tokens itself, so the tokenizer adds none
   *  (HF's apply_chat_template(tokenize=True) encodes with add_special_tokens=False). */
  encode(tokenizer: Pick<Tokenizer, 'encode'>, messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): number[] {
    return tokenizer.encode(this.render(messages, opts), { addSpecialTokens: false });
  }
}

/** Renders `messages` with the chat template of `dir` and encodes them with `tokenizer` (or dir's tokenizer). */
export function chatTokenIds(dir: string, tokenizer: Pick<Tokenizer, 'encode'>, messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): number[] {
  return ChatTemplate.load(dir).encode(tokenizer, messages, opts);
}

/**
 * A copy of `v` the template may see: JSON-like values as they are (keys whose value is undefined left out), and
 * anything else (the pixels of an image part, a Buffer, a class instance, a function) as a short marker string, so
 * that `'image' in part` stays true without handing megabytes of pixels to the interpreter.
 */
function templateValue(v: unknown): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map(templateValue);
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = templateValue(x);
      return out;
    }
    return `[${(v as object).constructor?.name ?? 'object'}]`;
  }
  return v === undefined ? null : `[${typeof v}]`;
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new ValueError(`chat: messages must be a list of {role, content}, got ${typeof messages}`);
  messages.forEach((m, k) => {
    if (!isObject(m) || typeof m.role !== 'string') throw new ValueError(`chat: messages[${k}] must be an object with a string "role"`);
    const c = m.content;
    if (c === undefined || c === null || typeof c === 'string') return;
    if (!Array.isArray(c)) throw new ValueError(`chat: messages[${k}].content must be a string or a list of parts, got ${typeof c}`);
    c.forEach((p, j) => {
      if (!isObject(p) || typeof p.type !== 'string') throw new ValueError(`chat: messages[${k}].content[${j}] must be an object with a string "type"`);
      if (p.type === 'text' && typeof p.text !== 'string') throw new ValueError(`chat: messages[${k}].content[${j}] is a text part without a string "text"`);
    });
  });
}

/** HF's continue_final_message: cut the text right after the final message's content. */
function cutAfterFinalMessage(text: string, messages: readonly ChatMessage[], label: string): string {
  const last = messages[messages.length - 1];
  if (!last) throw new ValueError('chat: continueFinalMessage needs at least one message');
  let final: string | undefined;
  if (typeof last.content === 'string') final = last.content;
  else if (Array.isArray(last.content)) {
    for (let k = last.content.length - 1; k >= 0; k--) {
      const p = last.content[k] as Record<string, unknown>;
      if (typeof p.text === 'string') {
        final = p.text;
        break;
      }
    }
  }
  if (final === undefined) throw new ValueError('chat: continueFinalMessage is set but the final message has no text to continue');
  const stripped = pyStrip(final);
  const at = text.lastIndexOf(stripped);
  if (at < 0) {
    throw new ChatTemplateError('render', `${label}: continueFinalMessage is set but the final message does not appear in the rendered chat`);
  }
  const keep = text.slice(at, at + pyLstrip(final).length) === final ? pyLstrip(final).length : stripped.length;
  return text.slice(0, at + keep);
}
