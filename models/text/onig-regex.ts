// Oniguruma → JavaScript regex translation, for the Split pre-tokenizers of Hugging Face tokenizer.json files
// (Qwen2's and GPT-2's patterns use Oniguruma syntax that JavaScript's `u` regexes spell differently).

import { UnsupportedError } from '../../core/errors.js';

// ---------------------------------------------------------------------------------------------------------------
// Oniguruma → JS regex translation.

const WS = '\\p{White_Space}';
const NOT_WS = '\\P{White_Space}';
const WORD_CLASS_BODY = '\\p{L}\\p{M}\\p{Nd}\\p{Pc}';
const JS_SYNTAX_CHARS = new Set('^$\\.*+?()[]{}|/'.split(''));

function validPropertyEscape(body: string): boolean {
  try {
    new RegExp(`\\p{${body}}`, 'u');
    return true;
  } catch {
    return false;
  }
}

/** Both cases of an ASCII-or-Unicode letter as class members ('' when the character has no other case). */
function caseVariants(ch: string): string[] {
  const set = new Set<string>([ch]);
  const lo = ch.toLowerCase(), up = ch.toUpperCase();
  if ([...lo].length === 1) set.add(lo);
  if ([...up].length === 1) set.add(up);
  return [...set];
}

/**
 * Translates an Oniguruma pattern (as used by HF tokenizers' Split pre-tokenizer) into JS RegExp source for the
 * `u` flag. Throws UnsupportedError naming the construct when there is no faithful JS equivalent.
 */
export function translateOnigRegex(pattern: string): string {
  const cps = [...pattern];
  let out = '';
  let i = 0;
  let inClass = false;
  let classStart = false; // just after '[' or '[^': a ']' here is a literal
  // Case-insensitivity per open group; the top of the stack is the current group.
  const ciStack: boolean[] = [false];
  let lastWasQuantifier = false;
  const fail = (what: string): never => {
    throw new UnsupportedError(`regex ${JSON.stringify(pattern)}: ${what} has no JS equivalent`);
  };
  const ci = () => ciStack[ciStack.length - 1]!;

  const escape = (): string => {
    // cps[i] is the backslash.
    const c = cps[i + 1];
    if (c === undefined) fail('a trailing backslash');
    i += 2;
    switch (c) {
      case 's': return WS;
      case 'S': return NOT_WS;
      case 'd': return '\\p{Nd}';
      case 'D': return '\\P{Nd}';
      case 'w': return inClass ? WORD_CLASS_BODY : `[${WORD_CLASS_BODY}]`;
      case 'W': if (inClass) fail('\\W inside a character class'); return `[^${WORD_CLASS_BODY}]`;
      case 'h': return inClass ? '0-9a-fA-F' : '[0-9a-fA-F]';
      case 'H': if (inClass) fail('\\H inside a character class'); return '[^0-9a-fA-F]';
      case 'A': if (inClass) fail('\\A inside a character class'); return '^';
      case 'z': if (inClass) fail('\\z inside a character class'); return '$';
      case 'Z': if (inClass) fail('\\Z inside a character class'); return '(?=\\n?$)';
      case 'p': case 'P': {
        if (cps[i] !== '{') fail(`\\${c} without {name}`);
        const close = cps.indexOf('}', i);
        if (close < 0) fail(`an unterminated \\${c}{`);
        let body = cps.slice(i + 1, close).join('');
        i = close + 1;
        let neg = c === 'P';
        if (body.startsWith('^')) (neg = !neg), (body = body.slice(1));
        let js = body;
        if (!validPropertyEscape(js)) js = `Script=${body}`;
        if (!validPropertyEscape(js)) fail(`the property \\p{${body}}`);
        return `\\${neg ? 'P' : 'p'}{${js}}`;
      }
      case 'x': {
        if (cps[i] === '{') {
          const close = cps.indexOf('}', i);
          if (close < 0) fail('an unterminated \\x{');
          const hex = cps.slice(i + 1, close).join('');
          i = close + 1;
          return `\\u{${hex}}`;
        }
        const hex = cps.slice(i, i + 2).join('');
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) fail('\\x without two hex digits');
        i += 2;
        return `\\x${hex}`;
      }
      case 'u': {
        const hex = cps.slice(i, i + 4).join('');
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('\\u without four hex digits');
        i += 4;
        return `\\u${hex}`;
      }
      case 't': case 'n': case 'r': case 'f': case 'v': case 'b': case 'B': case '0':
        return '\\' + c;
      case 'K': case 'G': case 'X': case 'R': case 'N': case 'O': case 'y': case 'Y':
        return fail(`\\${c}`);
      default:
        if (/[1-9]/.test(c!)) return '\\' + c; // back-reference
        if (/[A-Za-z]/.test(c!)) return fail(`the escape \\${c}`);
        // An escaped punctuation or other literal character: JS's u mode only accepts escapes of its syntax
        // characters, so write the rest as a code point escape.
        if (c === '-') return inClass ? '\\-' : '-';
        return JS_SYNTAX_CHARS.has(c!) ? '\\' + c : `\\u{${c!.codePointAt(0)!.toString(16)}}`;
    }
  };

  while (i < cps.length) {
    const c = cps[i]!;
    if (inClass) {
      if (c === ']' && !classStart) {
        out += ']';
        inClass = false;
        i++;
        lastWasQuantifier = false;
        continue;
      }
      classStart = false;
      if (c === '\\') { out += escape(); continue; }
      if (c === '[') fail('a nested character class');
      if (c === '&' && cps[i + 1] === '&') fail('a class intersection (&&)');
      // A range x-y: copied as is, plus the other case's range under (?i) when both ends are ASCII letters.
      if (cps[i + 1] === '-' && cps[i + 2] !== undefined && cps[i + 2] !== ']' && cps[i + 2] !== '\\') {
        const lo = c, hi = cps[i + 2]!;
        out += `${lo}-${hi}`;
        if (ci() && /^[a-z]$/.test(lo) && /^[a-z]$/.test(hi)) out += `${lo.toUpperCase()}-${hi.toUpperCase()}`;
        else if (ci() && /^[A-Z]$/.test(lo) && /^[A-Z]$/.test(hi)) out += `${lo.toLowerCase()}-${hi.toLowerCase()}`;
        i += 3;
        continue;
      }
      out += ci() && /\p{L}/u.test(c) ? caseVariants(c).join('') : c;
      i++;
      continue;
    }
    let quant = false;
    switch (c) {
      case '\\':
        out += escape();
        break;
      case '[':
        inClass = true;
        classStart = true;
        out += '[';
        i++;
        if (cps[i] === '^') (out += '^'), i++;
        break;
      case '(': {
        const rest = cps.slice(i, i + 4).join('');
        if (rest.startsWith('(?#')) {
          const close = cps.indexOf(')', i);
          if (close < 0) fail('an unterminated comment');
          i = close + 1;
          break;
        }
        if (rest.startsWith('(?>')) fail('an atomic group (?>...)');
        const flagGroup = /^\(\?([imx]*)(?:-([imx]*))?([:)])/.exec(cps.slice(i, i + 12).join(''));
        if (flagGroup && (flagGroup[1] || flagGroup[2])) {
          const on = flagGroup[1] ?? '', off = flagGroup[2] ?? '';
          if (/[mx]/.test(on + off)) fail(`the inline flags (?${on}${off ? '-' + off : ''})`);
          const next = on.includes('i') ? true : off.includes('i') ? false : ci();
          i += flagGroup[0].length;
          if (flagGroup[3] === ':') {
            ciStack.push(next);
            out += '(?:';
          } else {
            ciStack[ciStack.length - 1] = next; // (?i) applies to the rest of the enclosing group
          }
          break;
        }
        ciStack.push(ci());
        out += '(';
        i++;
        if (cps[i] === '?') {
          // (?:  (?=  (?!  (?<=  (?<!  (?<name>  pass through
          const m = /^\?(?::|=|!|<=|<!|<[A-Za-z_][A-Za-z0-9_]*>)/.exec(cps.slice(i, i + 40).join(''));
          if (!m) fail(`the group syntax (${cps.slice(i, i + 3).join('')}`);
          out += m![0];
          i += m![0].length;
        }
        break;
      }
      case ')':
        if (ciStack.length <= 1) fail('an unbalanced )');
        ciStack.pop();
        out += ')';
        i++;
        break;
      case '*': case '+': case '?':
        if (lastWasQuantifier && c === '+') fail('a possessive quantifier');
        out += c;
        i++;
        quant = !(c === '?' && lastWasQuantifier); // a '?' after a quantifier makes it lazy and ends it
        break;
      case '{': {
        const m = /^\{(\d*)(,?)(\d*)\}/.exec(cps.slice(i, i + 24).join(''));
        if (m && (m[1] || m[3])) {
          out += m[1] ? m[0] : `{0,${m[3]}}`; // Oniguruma's {,n} is {0,n}
          i += m[0].length;
          quant = true;
        } else {
          out += '\\{';
          i++;
        }
        break;
      }
      case '}': case ']':
        out += '\\' + c;
        i++;
        break;
      default:
        if (ci() && /\p{L}/u.test(c)) {
          const v = caseVariants(c);
          out += v.length > 1 ? `[${v.join('')}]` : c;
        } else {
          out += c === '/' ? '\\/' : c;
        }
        i++;
    }
    lastWasQuantifier = quant;
  }
  if (inClass) fail('an unterminated character class');
  if (ciStack.length !== 1) fail('an unbalanced (');
  return out;
}

/** Oniguruma's default split regex of the ByteLevel pre-tokenizer (use_regex: true), GPT-2's pattern. */
export const GPT2_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
