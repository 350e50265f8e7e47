// Lookups and bookings together, at a set rate and share: the production mix of issue #11.
//
//   loadtest/run mixed --stack postgres [--faults]            # Marquee on PostgreSQL + Redis
//   INSTANCES=2 loadtest/run mixed --stack postgres            # two instances, one database
//   loadtest/run mixed --target floor [--faults]               # the floor: /mux/{id} and /hold
//
// Two constant-arrival-rate scenarios share RATE (default 1940/s): `lookups` runs
// RATE x (1 - BOOK_SHARE) iterations a second, each one request of the lookup mix of
// lib/catalogue.js (list, detail, schedules, seats; popular concerts more often, SKEW and MIX
// as there); `bookings` runs RATE x BOOK_SHARE (default 0.1), each a hold of a seat and, for
// PAY_SHARE of them (default 0.5), a charge of its price and the payment, each with its own
// Idempotency-Key, as booking-rush does. Every metric of a scenario carries the tag `kind`
// (lookup or booking), so the summary has http_req_duration{kind:lookup} and {kind:booking},
// and dropped_iterations is per scenario.
//
// Seats and users. Booking n (n = the scenario's iteration number) takes seat number
// (n x STRIDE) mod N of the N seats there are, with STRIDE coprime to N, so that no two bookings
// race for a seat until every seat has been tried once; and user FIRST_USER + n mod USERS
// (USERS default 1,000,000), so that no user reaches the server's hold limits
// (booking.max_holds_per_user). Tokens are minted in k6 (lib/auth.js, JWT_SECRET). On Marquee
// the seats are those setup() finds available in the schedules open for booking (at most
// MAX_SEATS, 200,000); on the floor
// they are 1..SEATS (default 24000, the floor's own default), and a booking is the hold alone:
// the floor has no payment (PAY_SHARE does not apply).
//
// Expected answers: 200 and 201, and 409 for a hold (seat taken, hold limit: the answer of a
// lost race). Anything else is a failure, counted in mixed_failures{kind} and printed as one
// line that loadtest/mixed.py reads:
//
//   MIXED_FAILURE t=<epoch ms> kind=lookup|hold|charge|pay status=<0 for no answer> retry_after=<header or -> route=<path, ids as {id}>
//
// Thresholds: no failed lookup ever; no failed booking either, unless FAULTS=1 (loadtest/run
// --faults), where loadtest/run checks instead that every booking failure is a 503 with
// Retry-After inside the window around the PostgreSQL restart.
//
// The floor's variants, for bounds (docs/performance.md, "What the mix itself costs"): FLOOR_LOOKUP
// mux (default) or fixed sends its lookups to /mux/{id} (one Redis GET) or to /fixed/{id} (a
// precomputed body); FLOOR_WRITES holds (default) or matched. With matched, the first PAY_SHARE of
// every 1,000 bookings whose hold took its seat send two more /hold writes, on two more seats,
// where Marquee's send the charge and the payment: the floor then carries as many write requests
// as Marquee's bookings, each its cheapest (one UPDATE, one commit). Every write takes the next
// seat of the stride's order, so SEATS must cover the run's writes, or the last ones find their
// seat taken (409): the default 24,000 covers 60 s of the default mix (388 writes a second).
//
// Knobs: RATE (1940), DURATION (2m), BOOK_SHARE (0.1), PAY_SHARE (0.5), TARGET (marquee or
// floor), FLOOR_LOOKUP, FLOOR_WRITES, BASE_URLS (comma-separated instances; default BASE_URL),
// USERS, FIRST_USER, SEATS (floor), MAX_SEATS, PRE_ALLOCATED_VUS (200) and MAX_VUS (600) for the
// lookups (the bookings get a quarter and a half of them), FAULTS, and those of lib/catalogue.js
// (BODY_CHECKS defaults to 0.1 here) and lib/auth.js.

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';

import { tokenMinter } from './lib/auth.js';
import {
  BASE_URL, CONCERTS, envBool, envDuration, envInt, envNumber, envString,
} from './lib/config.js';
import {
  assertCatalogue, defaultBodyChecks, lookupMix, perRouteDurations, popularId, useBaseUrl,
} from './lib/catalogue.js';
import { wholeRates } from './lib/executors.js';
import { runList, toRuns } from './lib/ids.js';

const TARGET = envString('TARGET', 'marquee');
if (!['marquee', 'floor'].includes(TARGET)) throw new Error(`TARGET=${TARGET}: marquee or floor`);
const FLOOR = TARGET === 'floor';
const FLOOR_LOOKUP = envString('FLOOR_LOOKUP', 'mux');
if (!['mux', 'fixed'].includes(FLOOR_LOOKUP)) throw new Error(`FLOOR_LOOKUP=${FLOOR_LOOKUP}: mux or fixed`);
const FLOOR_WRITES = envString('FLOOR_WRITES', 'holds');
if (!['holds', 'matched'].includes(FLOOR_WRITES)) {
  throw new Error(`FLOOR_WRITES=${FLOOR_WRITES}: holds or matched`);
}
const RATE = envNumber('RATE', 1940);
const BOOK_SHARE = envNumber('BOOK_SHARE', 0.1);
const PAY_SHARE = envNumber('PAY_SHARE', 0.5);
for (const [name, value] of [['BOOK_SHARE', BOOK_SHARE], ['PAY_SHARE', PAY_SHARE]]) {
  if (value < 0 || value > 1) throw new Error(`${name}=${value} is a share, between 0 and 1`);
}
if (RATE <= 0) throw new Error(`RATE=${RATE} must be above 0`);
// The paying bookings: the first PAYING of every 1,000 (a fixed share, not a random one).
const PAYING = Math.round(PAY_SHARE * 1000);
const pays = (n) => (n % 1000) < PAYING;
const DURATION = envDuration('DURATION', '2m');
const USERS = envInt('USERS', 1000000, 1);
const FIRST_USER = envInt('FIRST_USER', 1, 1);
const FLOOR_SEATS = envInt('SEATS', 24000, 1);
const MAX_SEATS = envInt('MAX_SEATS', 200000, 1);
const FAULTS = envBool('FAULTS', false);
const BASE_URLS = envString('BASE_URLS', BASE_URL).split(',').map((u) => u.trim().replace(/\/+$/, ''))
  .filter((u) => u !== '');
// The lookups check every status and one body in ten (BODY_CHECKS): k6 shares the cores with
// the server, and the floor's lookups have no body to check.
defaultBodyChecks(0.1);
const PRE = envInt('PRE_ALLOCATED_VUS', 200, 1);
const MAX = Math.max(envInt('MAX_VUS', 600, 1), PRE);

const ROUTES = {
  mux: '/mux/{id}',
  fixed: '/fixed/{id}',
  floorHold: '/hold/{seat}/{user}',
  hold: 'POST /api/v1/reservations',
  charge: 'POST /api/v1/wallet/charge',
  pay: 'POST /api/v1/reservations/{id}/payment',
};

const failures = new Counter('mixed_failures');
const holds = new Counter('mixed_holds');
const seatTaken = new Counter('mixed_seat_taken');
const payments = new Counter('mixed_payments');

http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 409));

/** A constant-arrival-rate scenario of `rate` iterations a second (three decimals kept). */
function atRate(rate, exec_, kind, pre, max) {
  const whole = wholeRates([Math.round(rate * 1000) / 1000], '1s');
  return {
    executor: 'constant-arrival-rate',
    exec: exec_,
    rate: whole.scale(Math.round(rate * 1000) / 1000),
    timeUnit: whole.timeUnit,
    duration: DURATION,
    preAllocatedVUs: pre,
    maxVUs: max,
    gracefulStop: envDuration('GRACEFUL_STOP', '30s'),
    tags: { kind },
  };
}

const scenarios = {};
if (BOOK_SHARE < 1) scenarios.lookups = atRate(RATE * (1 - BOOK_SHARE), 'lookup', 'lookup', PRE, MAX);
if (BOOK_SHARE > 0) {
  scenarios.bookings = atRate(RATE * BOOK_SHARE, 'booking', 'booking', Math.max(10, Math.ceil(PRE / 4)),
    Math.max(20, Math.ceil(MAX / 2)));
}

// Every series the report reads; `max>=0` and `count>=0` always hold and only make k6 keep the
// tagged sub-series in its summary.
const shown = (names, expression) => Object.fromEntries(names.map((name) => [name, [expression]]));

export const options = {
  scenarios,
  thresholds: {
    'http_req_failed{kind:lookup}': ['rate==0'],
    'mixed_failures{kind:lookup}': ['count==0'],
    'checks{kind:lookup}': ['rate==1'],
    'http_req_failed{kind:booking}': [FAULTS ? 'rate>=0' : 'rate==0'],
    'mixed_failures{kind:booking}': [FAULTS ? 'count>=0' : 'count==0'],
    ...shown(['http_req_duration{kind:lookup}', 'http_req_duration{kind:booking}'], 'max>=0'),
    ...shown(['dropped_iterations{scenario:lookups}', 'dropped_iterations{scenario:bookings}',
      'mixed_holds', 'mixed_seat_taken', 'mixed_payments'], 'count>=0'),
    ...(FLOOR ? shown([`http_req_duration{name:${ROUTES[FLOOR_LOOKUP]}}`, `http_req_duration{name:${ROUTES.floorHold}}`], 'max>=0')
      : { ...perRouteDurations(), ...shown([ROUTES.hold, ROUTES.charge, ROUTES.pay].map((r) => `http_req_duration{name:${r}}`), 'max>=0') }),
  },
};

/** 1 <= stride < n with gcd(stride, n) = 1, near n x 0.618 so that consecutive picks spread out. */
export function coprimeStride(n) {
  const gcd = (a, b) => (b === 0 ? a : gcd(b, a % b));
  if (n <= 2) return 1;
  for (let s = Math.floor(n * 0.618); s > 1; s -= 1) if (gcd(s, n) === 1) return s;
  return 1;
}

/** Responses of GET requests, 50 at a time; each must answer 200. */
function getAll(urls, route) {
  const out = [];
  for (let start = 0; start < urls.length; start += 50) {
    const batch = urls.slice(start, start + 50).map((url) => ['GET', url, null, { tags: { name: route } }]);
    for (const res of http.batch(batch)) {
      if (res.status !== 200) throw new Error(`${res.url}: ${res.status}`);
      out.push(res.json());
    }
  }
  return out;
}

/**
 * The available seats of the schedules open for booking now (a hold on another answers 409
 * booking-closed), in id order, up to MAX_SEATS: bookings walk them by the stride.
 */
function availableSeats(base) {
  const now = Date.now();
  const concerts = [];
  for (let id = 1; id <= CONCERTS; id += 1) concerts.push(`${base}/api/v1/concerts/${id}/schedules`);
  const open = [];
  for (const schedules of getAll(concerts, '/api/v1/concerts/{concertId}/schedules')) {
    for (const s of schedules) {
      if (Date.parse(s.bookingOpensAt) <= now && now < Date.parse(s.bookingClosesAt) && s.availableSeats > 0) {
        open.push(s.id);
      }
    }
  }
  const ids = [];
  for (let start = 0; start < open.length && ids.length < MAX_SEATS; start += 50) {
    const urls = open.slice(start, start + 50).map((id) => `${base}/api/v1/schedules/${id}/seats?status=available`);
    for (const seats of getAll(urls, '/api/v1/schedules/{scheduleId}/seats')) {
      for (const seat of seats) ids.push(seat.id);
    }
  }
  return ids.slice(0, MAX_SEATS);
}

export function setup() {
  let seats;
  if (FLOOR) {
    const res = http.get(`${BASE_URLS[0]}/mux/1`, { tags: { name: ROUTES.mux } });
    if (res.status !== 200) throw new Error(`the floor at ${BASE_URLS[0]} answered ${res.status}`);
    seats = FLOOR_SEATS;
  } else {
    assertCatalogue();
    seats = availableSeats(BASE_URLS[0]);
    if (seats.length === 0) throw new Error('the catalogue has no available seat');
  }
  const count = FLOOR ? seats : seats.length;
  const bookings = RATE * BOOK_SHARE;
  console.log(`mixed: ${RATE}/s for ${DURATION}: ${(RATE - bookings).toFixed(1)} lookups/s and `
    + `${bookings.toFixed(1)} bookings/s (${FLOOR ? floorBookings() : `${100 * PAY_SHARE} % paid`}) on ${TARGET} `
    + `at ${BASE_URLS.join(', ')}; ${count} seats; faults ${FAULTS ? 'on' : 'off'}`);
  // loadtest/run starts its fault schedule when it reads this line: the load starts now.
  console.log(`MIXED_LOAD_STARTS t=${Date.now()}`);
  // As runs of consecutive ids: every VU parses the setup data (lib/ids.js).
  return { runs: FLOOR ? null : toRuns(seats), count, stride: coprimeStride(count) };
}

/** What a floor booking sends, in words, for the setup line. */
function floorBookings() {
  const lookups = `lookups on ${ROUTES[FLOOR_LOOKUP]}`;
  if (FLOOR_WRITES === 'holds') return `holds only; ${lookups}`;
  return `a hold, and two more holds for ${100 * PAY_SHARE} % of them, as many writes as Marquee's; ${lookups}`;
}

// This VU's view of the setup data's seats, built on its first booking.
let seatList = null;

function fail(kind, res) {
  const retryAfter = res.headers['Retry-After'];
  failures.add(1, { status: String(res.status), step: kind });
  // The route (tag `name`) too, so that a failed lookup says which read it was.
  const route = String(res.request && res.request.url ? res.request.url : '').replace(/^https?:\/\/[^/]+/, '')
    .replace(/\?.*$/, '').replace(/\/[0-9]+/g, '/{id}');
  console.log(`MIXED_FAILURE t=${Date.now()} kind=${kind} status=${res.status} `
    + `retry_after=${retryAfter === undefined || retryAfter === '' ? '-' : retryAfter} route=${route || '-'}`);
}

function instance() {
  return BASE_URLS[exec.scenario.iterationInTest % BASE_URLS.length];
}

export function lookup() {
  const base = instance();
  let res;
  if (FLOOR) {
    res = http.get(`${base}/${FLOOR_LOOKUP}/${popularId(CONCERTS)}`, { tags: { name: ROUTES[FLOOR_LOOKUP] } });
    check(res, { 'floor: status 200': (r) => r.status === 200 });
  } else {
    useBaseUrl(base);
    res = lookupMix();
  }
  if (res.status !== 200) fail('lookup', res);
}

const mint = FLOOR ? null : tokenMinter();

function auth(token, extra = {}) {
  return { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...extra };
}

/** One floor write: a /hold of the stride's m-th seat. Whether it took the seat. */
function floorHold(data, base, m, user, kind) {
  const seat = ((m * data.stride) % data.count) + 1;
  const res = http.post(`${base}/hold/${seat}/${user}`, null, { tags: { name: ROUTES.floorHold } });
  if (res.status === 201) return true;
  if (res.status === 409) seatTaken.add(1);
  else fail(kind, res);
  return false;
}

/** A floor booking: a hold, and with FLOOR_WRITES=matched, for a paying one, two more writes. */
function floorBooking(data, base, n, user) {
  // The writes of the bookings before n: one each, and two more for each paying one (matched).
  const paidBefore = Math.floor(n / 1000) * PAYING + Math.min(n % 1000, PAYING);
  const first = FLOOR_WRITES === 'matched' ? n + 2 * paidBefore : n;
  if (!floorHold(data, base, first, user, 'hold')) return;
  holds.add(1);
  if (FLOOR_WRITES !== 'matched' || !pays(n)) return;
  if (floorHold(data, base, first + 1, user, 'charge') && floorHold(data, base, first + 2, user, 'pay')) {
    payments.add(1);
  }
}

export function booking(data) {
  const n = exec.scenario.iterationInTest;
  const base = instance();
  const user = FIRST_USER + (n % USERS);
  if (FLOOR) {
    floorBooking(data, base, n, user);
    return;
  }
  const seatIndex = (n * data.stride) % data.count;
  if (seatList === null) seatList = runList(data.runs);
  const token = mint(user);
  const seatId = seatList.at(seatIndex);
  const hold = http.post(`${base}/api/v1/reservations`, JSON.stringify({ seatId }), {
    headers: auth(token), tags: { name: ROUTES.hold },
  });
  if (hold.status === 409) {
    seatTaken.add(1);
    return;
  }
  if (hold.status !== 201) {
    fail('hold', hold);
    return;
  }
  holds.add(1);
  if (!pays(n)) return;
  const reservation = hold.json();
  const charge = http.post(`${base}/api/v1/wallet/charge`, JSON.stringify({ amount: reservation.price }), {
    headers: auth(token, { 'Idempotency-Key': `charge-${reservation.id}` }), tags: { name: ROUTES.charge },
  });
  if (charge.status !== 200) {
    fail('charge', charge);
    return;
  }
  const payment = http.post(`${base}/api/v1/reservations/${reservation.id}/payment`, null, {
    headers: auth(token, { 'Idempotency-Key': `pay-${reservation.id}` }), tags: { name: ROUTES.pay },
  });
  if (payment.status !== 200) {
    fail('pay', payment);
    return;
  }
  if (check(payment, { 'pay: CONFIRMED': (r) => r.json().status === 'CONFIRMED' })) payments.add(1);
}
