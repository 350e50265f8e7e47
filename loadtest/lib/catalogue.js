// The catalogue's read requests, each with its checks, tagged `name` = the route template so
// that k6 groups the metrics by route (as Marquee's own http_server_requests_seconds does)
// instead of making one series per URL.
//
//   SKEW  how strongly lookups favour popular (low) ids: id = 1 + floor(n * u^SKEW) for u
//         uniform in [0, 1). 1 is uniform; the default 3 gives the first 10 % of the ids
//         46 % of the lookups (0.1^(1/3)), the way a few concerts draw most of the traffic.
//   MIX   the lookup mix in percent, "list,detail,schedules,seats" (default "20,50,20,10").
//   PAGE_SIZE  list page size (default 20)
//   BODY_CHECKS  the share of responses whose body is parsed and checked (default 1: every
//         one; mixed.js sets its own default); the status is checked on every response

import http from 'k6/http';
import { check } from 'k6';
import {
  BASE_URL, CONCERTS, SCHEDULES_PER_CONCERT, envInt, envNumber, envString,
} from './config.js';

export const ROUTES = {
  list: '/api/v1/concerts',
  concert: '/api/v1/concerts/{concertId}',
  schedules: '/api/v1/concerts/{concertId}/schedules',
  seats: '/api/v1/schedules/{scheduleId}/seats',
};

export const SKEW = envNumber('SKEW', 3);
export const PAGE_SIZE = envInt('PAGE_SIZE', 20, 1);
let bodyChecks = envNumber('BODY_CHECKS', 1);

/**
 * Checks the body of `share` of the responses from now on (the status of every one), unless
 * BODY_CHECKS says otherwise: parsing every body costs the load generator CPU that a script
 * sharing the server's cores may not want to spend.
 */
export function defaultBodyChecks(share) {
  bodyChecks = envNumber('BODY_CHECKS', share);
}

// What a request whose body is not checked has instead of a body: k6 reads and drops it
// (responseType 'none') rather than handing it to JavaScript.
const SKIPPED = Symbol('skipped');

/** Whether the next response's body is to be checked: BODY_CHECKS of them. */
function sampleBody() {
  return bodyChecks >= 1 || Math.random() < bodyChecks;
}

/** `checks` on `res`: the status always, the body checks when the body was sampled. */
function checkSampled(res, body, status, bodyChecksOf) {
  check(res, body === SKIPPED ? status : { ...status, ...bodyChecksOf });
}
const MIX = envString('MIX', '20,50,20,10').split(',').map(Number);
if (MIX.length !== 4 || MIX.some((w) => !Number.isFinite(w) || w < 0) || MIX.every((w) => w === 0)) {
  throw new Error(`MIX=${MIX.join(',')}: four non-negative weights, list,detail,schedules,seats`);
}

/** 1..n, uniformly. */
export function uniformId(n) {
  return 1 + Math.floor(Math.random() * n);
}

/** 1..n, skewed toward low ids by SKEW. */
export function popularId(n, skew = SKEW) {
  return 1 + Math.min(n - 1, Math.floor(n * Math.random() ** skew));
}

/** One of the concert's schedules: ids are numbered concert by concert. */
export function scheduleOf(concertId) {
  return (concertId - 1) * SCHEDULES_PER_CONCERT + uniformId(SCHEDULES_PER_CONCERT);
}

function parse(res) {
  try {
    return res.json();
  } catch (_) {
    return undefined;
  }
}

// The server the read requests go to: BASE_URL, or the instance a script chose for this
// iteration with useBaseUrl (a VU runs one iteration at a time, so a module variable is safe).
let baseUrl = BASE_URL;

/** Sends this VU's next read requests to `url` (one of several instances). */
export function useBaseUrl(url) {
  baseUrl = url;
}

/** GET `path`; with `withBody`, the response's body parsed, else SKIPPED: `[res, body]`. */
function get(path, route, extraTags, withBody) {
  const res = http.get(`${baseUrl}${path}`, {
    tags: { name: route, ...extraTags }, responseType: withBody ? 'text' : 'none',
  });
  return [res, withBody ? parse(res) : SKIPPED];
}

/** GET /api/v1/concerts?page=&size= */
export function listConcerts(page, size = PAGE_SIZE, tags = {}) {
  const [res, body] = get(`/api/v1/concerts?page=${page}&size=${size}`, ROUTES.list, tags, sampleBody());
  const expected = Math.max(0, Math.min(size, CONCERTS - page * size));
  checkSampled(res, body, { 'list: status 200': (r) => r.status === 200 }, {
    'list: the asked page, full': () => body !== undefined && body.page === page
      && Array.isArray(body.items) && body.items.length === expected && body.total >= CONCERTS,
  });
  return res;
}

/** GET /api/v1/concerts/{concertId} */
export function getConcert(id, tags = {}) {
  const [res, body] = get(`/api/v1/concerts/${id}`, ROUTES.concert, tags, sampleBody());
  checkSampled(res, body, { 'concert: status 200': (r) => r.status === 200 }, {
    'concert: the asked id': () => body !== undefined && body.id === id && typeof body.title === 'string',
  });
  return res;
}

/** GET /api/v1/concerts/{concertId}/schedules */
export function getSchedules(concertId, tags = {}) {
  const [res, body] = get(`/api/v1/concerts/${concertId}/schedules`, ROUTES.schedules, tags,
    sampleBody());
  checkSampled(res, body, { 'schedules: status 200': (r) => r.status === 200 }, {
    "schedules: the concert's": () => Array.isArray(body) && body.length === SCHEDULES_PER_CONCERT
      && body.every((s) => s.concertId === concertId && s.availableSeats <= s.totalSeats),
  });
  return res;
}

/** GET /api/v1/schedules/{scheduleId}/seats?status=available */
export function getAvailableSeats(scheduleId, tags = {}) {
  const [res, body] = get(`/api/v1/schedules/${scheduleId}/seats?status=available`, ROUTES.seats,
    tags, sampleBody());
  checkSampled(res, body, { 'seats: status 200': (r) => r.status === 200 }, {
    // The API answers the status in upper case (AVAILABLE) while the filter is lower case.
    'seats: available only': () => Array.isArray(body)
      && body.every((s) => String(s.status).toLowerCase() === 'available'),
  });
  return res;
}

const PAGES = Math.ceil(CONCERTS / PAGE_SIZE);
const TOTAL_WEIGHT = MIX.reduce((a, b) => a + b, 0);

/**
 * One request of the realistic lookup mix: by default 20 % list pages (early pages more
 * often), 50 % concert details (popular ids more often), 20 % a concert's schedules and
 * 10 % one schedule's available seats (both for popular concerts more often).
 */
export function lookupMix(tags = {}) {
  let pick = Math.random() * TOTAL_WEIGHT;
  if ((pick -= MIX[0]) < 0) return listConcerts(popularId(PAGES) - 1, PAGE_SIZE, tags);
  if ((pick -= MIX[1]) < 0) return getConcert(popularId(CONCERTS), tags);
  if ((pick -= MIX[2]) < 0) return getSchedules(popularId(CONCERTS), tags);
  return getAvailableSeats(scheduleOf(popularId(CONCERTS)), tags);
}

/** Stops the test in setup() when the server does not hold the catalogue the knobs describe. */
export function assertCatalogue() {
  const res = http.get(`${BASE_URL}/api/v1/concerts?page=0&size=1`, { tags: { name: ROUTES.list } });
  const body = parse(res);
  if (res.status !== 200 || body === undefined) {
    throw new Error(`${BASE_URL} did not answer the concert list (status ${res.status})`);
  }
  if (body.total < CONCERTS) {
    throw new Error(`the server holds ${body.total} concerts, fewer than CONCERTS=${CONCERTS}`);
  }
  const schedules = http.get(`${BASE_URL}/api/v1/concerts/${CONCERTS}/schedules`, {
    tags: { name: ROUTES.schedules },
  });
  const last = parse(schedules);
  const expectedLast = CONCERTS * SCHEDULES_PER_CONCERT;
  if (!Array.isArray(last) || last.length !== SCHEDULES_PER_CONCERT
      || last[last.length - 1].id !== expectedLast) {
    throw new Error(`concert ${CONCERTS} should have schedules up to id ${expectedLast} `
      + `(SCHEDULES_PER_CONCERT=${SCHEDULES_PER_CONCERT}); it has ${schedules.body}`);
  }
}

/**
 * Thresholds that always pass, on each route's duration: k6 prints a metric's per-tag
 * sub-series only when a threshold names it, and the per-route figures belong in the summary.
 */
export function perRouteDurations(routes = Object.values(ROUTES)) {
  const out = {};
  for (const route of routes) out[`http_req_duration{name:${route}}`] = ['max>=0'];
  return out;
}
