// Settings shared by every scenario, read from the environment (k6 passes the shell's
// environment to __ENV, and `k6 run -e NAME=value` overrides it).
//
//   BASE_URL               where Marquee listens (default http://127.0.0.1:8080)
//   CONCERTS               concerts in the seeded catalogue (default 120, the demo catalogue;
//                          20000 for `marquee seed --concerts 20000 --schedules 1 --seats 50`)
//   SCHEDULES_PER_CONCERT  schedules per concert (default 4, the demo catalogue; 1 for the bulk set)
//
// Ids are chosen within 1..CONCERTS and 1..CONCERTS*SCHEDULES_PER_CONCERT: both seeds number
// their rows from 1 on an empty database, and a scenario that asked for ids outside the
// catalogue would measure 404s instead of lookups.

/** The value of an environment variable, or `fallback` when it is unset or empty. */
export function envString(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

/** A number from the environment; a value that is not a number stops the test at start-up. */
export function envNumber(name, fallback) {
  const raw = envString(name, undefined);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name}=${raw} is not a number`);
  return value;
}

/** A whole number from the environment, at least `min`. */
export function envInt(name, fallback, min = 0) {
  const value = envNumber(name, fallback);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name}=${value} must be a whole number >= ${min}`);
  }
  return value;
}

/** true/false, 1/0, yes/no, on/off. */
export function envBool(name, fallback) {
  const raw = envString(name, undefined);
  if (raw === undefined) return fallback;
  const value = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new Error(`${name}=${raw} is not a boolean`);
}

/** A k6 duration ("500ms", "30s", "1m30s", "2h") from the environment, checked. */
export function envDuration(name, fallback) {
  const value = envString(name, fallback);
  if (value !== undefined) parseDuration(value, name);
  return value;
}

const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000 };

/** Milliseconds in a k6 duration string such as "1m30s" or "250ms". */
export function parseDuration(text, what = 'duration') {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  let match;
  while ((match = re.exec(text)) !== null) {
    if (match.index !== consumed) break;
    total += Number(match[1]) * UNIT_MS[match[2]];
    consumed = re.lastIndex;
  }
  if (consumed === 0 || consumed !== text.length) {
    throw new Error(`${what}: "${text}" is not a duration such as 30s, 1m30s or 500ms`);
  }
  return total;
}

export const BASE_URL = envString('BASE_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const CONCERTS = envInt('CONCERTS', 120, 1);
export const SCHEDULES_PER_CONCERT = envInt('SCHEDULES_PER_CONCERT', 4, 1);
export const SCHEDULES = CONCERTS * SCHEDULES_PER_CONCERT;
