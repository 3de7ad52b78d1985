// A pricing policy for ispmanager-reseller: a markup over the upstream cost, then a price ending.
//
// Settings (the configuration's `[pricing]` table, received as JSON):
//
//     markup_percent = "20"   # optional, default "0": a decimal string (or an integer), above -100
//     ending = "0.90"         # optional: every price is raised to the next amount ending in .90
//
// Every amount is an exact integer of ten-thousandths, as BILLmanager prints costs: money is a
// BigInt (WIT s64) and never passes through a Number.
import { emit } from 'billing:reseller/log@0.2.0';

const UNITS = 10_000n; // ten-thousandths in one unit of a currency
const HUNDRED_PERCENT = 100n * UNITS; // a markup is counted in ten-thousandths of a percent
const S64_MIN = -(2n ** 63n);
const S64_MAX = 2n ** 63n - 1n;
const MAX_DEPTH = 128; // the deepest nesting of JSON arrays and objects read, the outermost being 1

const DECIMAL = /^-?[0-9]+(?:\.[0-9]{1,4})?$/;
const TOO_PRECISE = /^-?[0-9]+\.[0-9]{5,}$/;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const HEX = /^[0-9a-fA-F]{4}$/;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

// Why the offers cannot be priced: a `pricing-error` on its way out of the settings reader or the
// arithmetic. `price` returns it as the result's `err` case: a refusal is never thrown to the host.
class Refusal {
  constructor(error) {
    this.error = error;
  }
}

export const policy = {
  // Returns the WIT `result` as the bindings take it: `{ tag: 'ok', val: [...] }` or
  // `{ tag: 'err', val: { tag: 'invalid-settings', val: { field, value, message } } }`.
  // `today` does not change these prices.
  price(offers, settings, today) {
    try {
      const { markup, ending } = readSettings(settings);
      const priced = offers.map((offer) => priceOffer(offer, markup, ending));
      emit('debug', `priced ${plural(offers.length)}`);
      return { tag: 'ok', val: priced };
    } catch (e) {
      if (!(e instanceof Refusal)) throw e; // a bug: let the host see the fault
      emit('debug', `refused to price ${plural(offers.length)}`);
      return { tag: 'err', val: e.error };
    }
  },
};

function plural(n) {
  return n === 1 ? `${n} offer` : `${n} offers`;
}

function priceOffer(offer, markup, ending) {
  const prices = offer.upstreamCosts.map(({ months, cost }) => {
    const units = markedUp(cost.units, markup, ending);
    if (units < S64_MIN || units > S64_MAX) {
      throw new Refusal({
        tag: 'overflow',
        val: `the ${months}-month price of \`${offer.intname}\` does not fit in a money amount`
          + ` (cost ${amount(cost.units)} ${cost.currency})`,
      });
    }
    return { months, price: { units, currency: cost.currency } };
  });
  return { tariffId: offer.tariffId, prices };
}

// `ceil(cost × (100 % + markup) / 100 %)`, then raised to the next amount whose fractional part is
// `ending` (the amount itself when it already has it).
function markedUp(cost, markup, ending) {
  const scaled = cost * (HUNDRED_PERCENT + markup);
  // BigInt division truncates towards zero; the divisor is positive.
  let price = scaled / HUNDRED_PERCENT;
  if (scaled > 0n && scaled % HUNDRED_PERCENT !== 0n) price += 1n;
  if (ending !== null) price += (((ending - price) % UNITS) + UNITS) % UNITS;
  return price;
}

// Ten-thousandths as a decimal with four places, e.g. `-12.3400`.
function amount(units) {
  const sign = units < 0n ? '-' : '';
  const abs = units < 0n ? -units : units;
  return `${sign}${abs / UNITS}.${String(abs % UNITS).padStart(4, '0')}`;
}

// Settings

function refuse(field, value, message) {
  return new Refusal({ tag: 'invalid-settings', val: { field, value, message } });
}

// The markup in ten-thousandths of a percent, and the ending in ten-thousandths or null.
function readSettings(text) {
  // A byte-order mark in front is dropped (the bindings' UTF-8 decoder already drops it before
  // this code runs): the same settings give the same answer in every language.
  if (text.startsWith('\ufeff')) text = text.slice(1);
  let doc;
  try {
    doc = readJson(text);
  } catch (e) {
    if (e !== NOT_JSON) throw e;
    throw refuse('pricing', text, 'the pricing settings are not valid JSON');
  }
  if (doc.kind !== 'object') {
    throw refuse('pricing', text, 'the pricing settings must be a table (a JSON object)');
  }
  let markup = 0n;
  let ending = null;
  const seen = new Set();
  for (const { key, kind, raw, string } of doc.members) {
    const field = `pricing.${key}`;
    const value = kind === 'string' ? string : raw;
    if (seen.has(key)) throw refuse(field, value, 'the setting is given twice');
    seen.add(key);
    if (key === 'markup_percent') markup = readMarkup(field, kind, value);
    else if (key === 'ending') ending = readEnding(field, kind, value);
    else throw refuse(field, value, 'unknown setting: the settings are markup_percent and ending');
  }
  return { markup, ending };
}

function readMarkup(field, kind, value) {
  let markup;
  if (kind === 'integer') markup = BigInt(value) * UNITS;
  else if (kind === 'string') markup = readDecimal(field, value);
  else if (kind === 'float') {
    throw refuse(field, value, `${value} is a float; write the markup as a decimal string, e.g. "12.5"`);
  } else {
    throw refuse(field, value, 'the markup is a percentage written as a decimal string, e.g. "12.5"');
  }
  if (markup <= -HUNDRED_PERCENT) {
    throw refuse(field, value,
      `${value} would make every price zero or negative; a markup must be above -100`);
  }
  return markup;
}

function readEnding(field, kind, value) {
  if (kind !== 'string') {
    throw refuse(field, value, 'the ending is a decimal string from 0 to 1 (excluded), e.g. "0.90"');
  }
  const ending = readDecimal(field, value);
  if (ending < 0n || ending >= UNITS) {
    throw refuse(field, value,
      `\`${value}\` is not from 0 to 1 (excluded): the ending is the fractional part of every price`);
  }
  return ending;
}

// A decimal string with at most four decimals, in ten-thousandths.
function readDecimal(field, value) {
  if (!DECIMAL.test(value)) {
    if (TOO_PRECISE.test(value)) throw refuse(field, value, `\`${value}\` has more than 4 decimals`);
    throw refuse(field, value, `\`${value}\` is not a decimal number`);
  }
  const negative = value.startsWith('-');
  const [whole, fraction = ''] = (negative ? value.slice(1) : value).split('.');
  const units = BigInt(whole) * UNITS + BigInt((fraction + '0000').slice(0, 4));
  return negative ? -units : units;
}

// JSON, read strictly (RFC 8259) and keeping each value's text as given: a float and an integer
// must be told apart (`20.0` is refused, `20` is not), which JSON.parse cannot do.

const NOT_JSON = Symbol('not JSON');

// The kind of the document's value and, for an object, its members in order as
// `{ key, kind, raw (text as given), string (decoded, for a string) }`.
function readJson(text) {
  const { kind, end, payload } = readValue(text, skipSpace(text, 0), 0);
  if (skipSpace(text, end) !== text.length) throw NOT_JSON;
  return { kind, members: kind === 'object' ? payload : [] };
}

function skipSpace(text, i) {
  while (i < text.length && ' \t\n\r'.includes(text[i])) i += 1;
  return i;
}

// `{ kind, end, payload }`: payload is the members of an object, the decoded text of a string.
function readValue(text, i, depth) {
  const c = text[i];
  if (c === '{') return readObject(text, i, depth + 1);
  if (c === '[') return readArray(text, i, depth + 1);
  if (c === '"') {
    const { end, string } = readString(text, i);
    return { kind: 'string', end, payload: string };
  }
  for (const literal of ['true', 'false', 'null']) {
    if (text.startsWith(literal, i)) return { kind: literal, end: i + literal.length, payload: null };
  }
  NUMBER.lastIndex = i;
  const number = NUMBER.exec(text);
  if (number === null) throw NOT_JSON;
  const kind = number[1] !== undefined || number[2] !== undefined ? 'float' : 'integer';
  return { kind, end: i + number[0].length, payload: null };
}

function readObject(text, i, depth) {
  if (depth > MAX_DEPTH) throw NOT_JSON;
  const members = [];
  i = skipSpace(text, i + 1);
  if (text[i] === '}') return { kind: 'object', end: i + 1, payload: members };
  for (;;) {
    if (text[i] !== '"') throw NOT_JSON;
    const { end: keyEnd, string: key } = readString(text, i);
    i = skipSpace(text, keyEnd);
    if (text[i] !== ':') throw NOT_JSON;
    const start = skipSpace(text, i + 1);
    const { kind, end, payload } = readValue(text, start, depth);
    members.push({ key, kind, raw: text.slice(start, end), string: kind === 'string' ? payload : null });
    i = skipSpace(text, end);
    if (text[i] === '}') return { kind: 'object', end: i + 1, payload: members };
    if (text[i] !== ',') throw NOT_JSON;
    i = skipSpace(text, i + 1);
  }
}

function readArray(text, i, depth) {
  if (depth > MAX_DEPTH) throw NOT_JSON;
  i = skipSpace(text, i + 1);
  if (text[i] === ']') return { kind: 'array', end: i + 1, payload: null };
  for (;;) {
    const { end } = readValue(text, i, depth);
    i = skipSpace(text, end);
    if (text[i] === ']') return { kind: 'array', end: i + 1, payload: null };
    if (text[i] !== ',') throw NOT_JSON;
    i = skipSpace(text, i + 1);
  }
}

// `{ end, string }` of the string starting at the quote at `i`.
function readString(text, i) {
  let out = '';
  i += 1;
  for (;;) {
    if (i >= text.length) throw NOT_JSON;
    const c = text[i];
    if (c === '"') return { end: i + 1, string: out };
    if (c === '\\') {
      const escape = text[i + 1];
      if (escape !== undefined && Object.hasOwn(ESCAPES, escape)) {
        out += ESCAPES[escape];
        i += 2;
      } else if (escape === 'u') {
        let code = readHex4(text, i + 2);
        i += 6;
        if (code >= 0xd800 && code <= 0xdbff) {
          const low = text.startsWith('\\u', i) ? readHex4(text, i + 2) : -1;
          if (low < 0xdc00 || low > 0xdfff) throw NOT_JSON; // a lone surrogate is no character
          code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          i += 6;
        } else if (code >= 0xdc00 && code <= 0xdfff) {
          throw NOT_JSON;
        }
        out += String.fromCodePoint(code);
      } else {
        throw NOT_JSON;
      }
    } else if (c < ' ') {
      throw NOT_JSON;
    } else {
      out += c;
      i += 1;
    }
  }
}

function readHex4(text, i) {
  const digits = text.slice(i, i + 4);
  if (!HEX.test(digits)) throw NOT_JSON;
  return parseInt(digits, 16);
}
