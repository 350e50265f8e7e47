// A ticket opening through the waiting room: USERS join one concert's queue within
// JOIN_WINDOW, poll it at the pollAfterSeconds each answer gives, and once ACTIVE hold a seat,
// charge its price and pay, as the booking walk-through does.
//
//   loadtest/run ticket-opening [--stack embedded|postgres]
//
// The run script starts the server with the waiting room on, seeds the opening's concert
// (CONCERT_ID, 121: `marquee seed --concerts 1 --schedules 1 --seats SEATS` next to the demo
// catalogue), passes the token secret in JWT_SECRET, and scrapes /metrics once a second.
//
// How the users are modelled. 20,000 users cannot be 20,000 VUs on a small machine, and k6's
// VUs share no memory, so a user's state (when it was told to poll next, whether it is
// admitted) lives in one VU: VU k of VUS owns the users k, k + VUS, k + 2 VUS, ... and runs
// each of them as its own asynchronous flow (http.asyncRequest and timers), so one user's slow
// hold does not delay the others' polls. User i (0-based) joins at start + i * JOIN_WINDOW /
// USERS, so the joins arrive at a constant rate across the window whatever the answers take,
// as an arrival-rate executor would send them; each poll is due pollAfterSeconds after the
// answer that asked for it. `queue_schedule_lag` measures how late the VUs sent what was due
// (a VU's JavaScript is single-threaded): its p99 should stay in the milliseconds for the
// figures to describe an open load.
//
// Knobs: USERS (20000), JOIN_WINDOW (20s), VUS (100), CONCERT_ID (121), FIRST_USER (1),
// MAX_WAIT (10m: how long after the join window a user still waits before giving up),
// HOLD_TRIES (3: seats tried when one is taken), START_DELAY (3s: between setup and the first
// join, so that every VU has minted its tokens), JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE,
// TOKEN_TTL (lib/auth.js).
//
// Expected answers are not failures: 409 (seat taken: try another), 404 (a poll of an entry
// that is gone) and 403 (a hold without an admission) are marked expected with
// http.setResponseCallback, so http_req_failed counts 5xx, timeouts and unexpected 4xx. The
// 404 and 403 still fail their check: with pollAfterSeconds obeyed and a ten-minute admission,
// neither should happen.

import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

import { tokenMinter } from './lib/auth.js';
import { BASE_URL, envDuration, envInt, parseDuration } from './lib/config.js';
import { runList, toRuns } from './lib/ids.js';

const USERS = envInt('USERS', 20000, 1);
const VUS = Math.min(envInt('VUS', 100, 1), USERS);
const JOIN_WINDOW_MS = parseDuration(envDuration('JOIN_WINDOW', '20s'), 'JOIN_WINDOW');
const MAX_WAIT_MS = parseDuration(envDuration('MAX_WAIT', '10m'), 'MAX_WAIT');
const START_DELAY_MS = parseDuration(envDuration('START_DELAY', '3s'), 'START_DELAY');
const CONCERT_ID = envInt('CONCERT_ID', 121, 1);
const FIRST_USER = envInt('FIRST_USER', 1, 1);
const HOLD_TRIES = envInt('HOLD_TRIES', 3, 1);

const QUEUE_ROUTE = '/api/v1/concerts/{concertId}/queue';
const QUEUE_URL = `${BASE_URL}/api/v1/concerts/${CONCERT_ID}/queue`;

const joinDuration = new Trend('queue_join_duration', true);
const pollDuration = new Trend('queue_poll_duration', true);
const timeToAdmission = new Trend('queue_time_to_admission', true);
const scheduleLag = new Trend('queue_schedule_lag', true);
const joins = new Counter('queue_joins');
const polls = new Counter('queue_polls');
const admissions = new Counter('queue_admissions_seen');
const lost = new Counter('queue_entries_lost');
const gaveUp = new Counter('queue_users_gave_up');
const holdAttempts = new Counter('booking_hold_attempts');
const holds = new Counter('booking_holds');
const seatTaken = new Counter('booking_seat_taken');
const notAdmitted = new Counter('booking_not_admitted');
const charges = new Counter('booking_charges');
const paymentAttempts = new Counter('booking_payment_attempts');
const payments = new Counter('booking_payments');
const failures = new Counter('ticket_failures');

http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 403, 404, 409));

// Every series the report reads; `max>=0` and `count>=0` always hold and only make k6 keep
// the tagged sub-series in its summary.
const shown = (names, expression) => Object.fromEntries(names.map((name) => [name, [expression]]));

export const options = {
  scenarios: {
    users: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: `${Math.ceil((START_DELAY_MS + JOIN_WINDOW_MS + MAX_WAIT_MS) / 1000) + 60}s`,
      gracefulStop: '10s',
    },
  },
  setupTimeout: '120s',
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    ...shown([
      'queue_join_duration', 'queue_poll_duration', 'queue_poll_duration{phase:joining}',
      'queue_poll_duration{phase:after}', 'queue_time_to_admission', 'queue_schedule_lag',
      `http_req_duration{name:POST ${QUEUE_ROUTE}}`, `http_req_duration{name:GET ${QUEUE_ROUTE}}`,
      'http_req_duration{name:POST /api/v1/reservations}', 'http_req_duration{name:POST /api/v1/wallet/charge}',
      'http_req_duration{name:POST /api/v1/reservations/{id}/payment}',
    ], 'max>=0'),
    ...shown([
      'queue_joins', 'queue_joins{answer:ACTIVE}', 'queue_joins{answer:WAITING}', 'queue_polls',
      'queue_admissions_seen', 'queue_entries_lost', 'queue_users_gave_up', 'booking_hold_attempts',
      'booking_holds', 'booking_seat_taken', 'booking_not_admitted', 'booking_charges',
      'booking_payment_attempts', 'booking_payments', 'ticket_failures',
    ], 'count>=0'),
  },
};

function auth(token, extra = {}) {
  return { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...extra };
}

function isEntry(body) {
  return body !== null && typeof body === 'object' && body.concertId === CONCERT_ID &&
    (body.status === 'WAITING' || body.status === 'ACTIVE') && Number.isInteger(body.pollAfterSeconds) &&
    body.pollAfterSeconds >= 1 && (body.status === 'ACTIVE' ? body.position === null : body.position >= 1);
}

function entryOf(response) {
  try {
    const body = response.json();
    return isEntry(body) ? body : null;
  } catch (_) {
    return null;
  }
}

export function setup() {
  const concert = http.get(`${BASE_URL}/api/v1/concerts/${CONCERT_ID}/schedules`);
  if (concert.status !== 200) throw new Error(`schedules of concert ${CONCERT_ID}: ${concert.status}`);
  const schedule = concert.json()[0];
  if (schedule === undefined) throw new Error(`concert ${CONCERT_ID} has no schedule`);
  const seats = http.get(`${BASE_URL}/api/v1/schedules/${schedule.id}/seats?status=available`);
  if (seats.status !== 200) throw new Error(`seats of schedule ${schedule.id}: ${seats.status}`);
  const seatIds = seats.json().map((seat) => seat.id);
  if (seatIds.length < USERS) {
    console.warn(`ticket-opening: ${seatIds.length} seats for ${USERS} users: some holds will find none`);
  }
  // A user outside the run: with the waiting room off every poll answers an open door (200
  // ACTIVE), and the run would measure nothing a queue does.
  const probe = http.get(QUEUE_URL, { headers: auth(tokenMinter()(FIRST_USER + USERS)) });
  if (probe.status !== 404) {
    throw new Error(`GET ${QUEUE_URL} for a user not in the queue: ${probe.status}, not 404: is the waiting room on?`);
  }
  console.log(`ticket-opening: ${USERS} users join concert ${CONCERT_ID} within ${JOIN_WINDOW_MS / 1000} s on ${VUS} VUs; ` +
    `schedule ${schedule.id} has ${seatIds.length} seats`);
  // As runs of consecutive ids: every VU parses the setup data (lib/ids.js).
  return { start: Date.now() + START_DELAY_MS, seats: toRuns(seatIds) };
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `due` (a Date.now() value), and records how late the wait ended. */
async function until(due) {
  const wait = due - Date.now();
  if (wait > 0) await pause(wait);
  scheduleLag.add(Math.max(0, Date.now() - due));
}

const post = (url, body, params) => http.asyncRequest('POST', url, body, params);

/** Holds a seat, charges its price and pays; `user.index` picks the first seat to try. */
async function book(user, seats) {
  const headers = auth(user.token, user.queueToken ? { 'Queue-Token': user.queueToken } : {});
  let reservation = null;
  for (let attempt = 0; attempt < HOLD_TRIES && reservation === null; attempt++) {
    // Distinct users start on distinct seats; a retry jumps far away, to a seat nobody near
    // in the line is likely to have taken.
    const seat = seats.at((user.index + attempt * 7919) % seats.length);
    holdAttempts.add(1);
    const hold = await post(`${BASE_URL}/api/v1/reservations`, JSON.stringify({ seatId: seat }), {
      headers, tags: { name: 'POST /api/v1/reservations' },
    });
    const answered = check(hold, {
      'hold: 201, or 409 seat-taken': (r) => r.status === 201 || (r.status === 409 && r.json().code === 'seat-taken'),
    });
    if (hold.status === 201) {
      reservation = hold.json();
    } else if (hold.status === 409 && answered) {
      seatTaken.add(1);
    } else {
      if (hold.status === 403) notAdmitted.add(1);
      failures.add(1, { step: 'hold' });
      return;
    }
  }
  if (reservation === null) {
    failures.add(1, { step: 'hold' });
    return;
  }
  holds.add(1);

  const charge = await post(`${BASE_URL}/api/v1/wallet/charge`, JSON.stringify({ amount: reservation.price }), {
    headers: auth(user.token, { 'Idempotency-Key': `charge-${reservation.id}` }),
    tags: { name: 'POST /api/v1/wallet/charge' },
  });
  if (!check(charge, { 'charge: 200': (r) => r.status === 200 })) {
    failures.add(1, { step: 'charge' });
    return;
  }
  charges.add(1);

  paymentAttempts.add(1);
  const payment = await post(`${BASE_URL}/api/v1/reservations/${reservation.id}/payment`, null, {
    headers: auth(user.token, { 'Idempotency-Key': `pay-${reservation.id}` }),
    tags: { name: 'POST /api/v1/reservations/{id}/payment' },
  });
  if (check(payment, { 'pay: 200 CONFIRMED': (r) => r.status === 200 && r.json().status === 'CONFIRMED' })) {
    payments.add(1);
  } else {
    failures.add(1, { step: 'pay' });
  }
}

/** Joins; the entry, or null when the join failed. */
async function join(user) {
  user.joinedAt = Date.now();
  const response = await post(QUEUE_URL, null, { headers: auth(user.token), tags: { name: `POST ${QUEUE_ROUTE}` } });
  const entry = entryOf(response);
  const answer = entry ? entry.status : String(response.status);
  joinDuration.add(response.timings.duration, { answer });
  joins.add(1, { answer });
  if (!check(response, { 'join: 201 with an entry': (r) => r.status === 201 && entry !== null })) {
    failures.add(1, { step: 'join' });
    return null;
  }
  return entry;
}

/** Polls; the entry, null when it is gone (404), or the last entry again after another
 * failure, which a client retries. */
async function poll(user, last, joiningUntil) {
  const sentAt = Date.now();
  const response = await http.asyncRequest('GET', QUEUE_URL, null, {
    headers: auth(user.token), tags: { name: `GET ${QUEUE_ROUTE}` },
  });
  const entry = entryOf(response);
  pollDuration.add(response.timings.duration, { phase: sentAt < joiningUntil ? 'joining' : 'after' });
  polls.add(1);
  if (check(response, { 'poll: 200 with an entry': (r) => r.status === 200 && entry !== null })) return entry;
  failures.add(1, { step: 'poll' });
  if (response.status !== 404) {
    console.warn(`poll: ${response.status} ${response.error_code || ''} ${response.error || ''} ${String(response.body).slice(0, 200)}`);
  }
  if (response.status === 404) {
    // Dropped from the queue although it polled when told to.
    lost.add(1);
    return null;
  }
  // A second later is what the shortest advice says.
  return { ...last, pollAfterSeconds: 1 };
}

/** One user, from its join to its payment (or until it gives up). */
async function live(user, seats, joiningUntil, deadline) {
  await until(user.joinAt);
  let entry = await join(user);
  while (entry !== null) {
    if (entry.queueToken) user.queueToken = entry.queueToken;
    if (entry.status === 'ACTIVE') {
      admissions.add(1);
      timeToAdmission.add(Date.now() - user.joinedAt);
      await book(user, seats);
      return;
    }
    const due = Date.now() + entry.pollAfterSeconds * 1000;
    if (due > deadline) {
      gaveUp.add(1);
      return;
    }
    await until(due);
    entry = await poll(user, entry, joiningUntil);
  }
}

export default async function (data) {
  // per-vu-iterations with one iteration each: iterationInTest is 0..VUS-1, one per VU.
  const slot = exec.scenario.iterationInTest;
  const mint = tokenMinter();
  const users = [];
  for (let index = slot; index < USERS; index += VUS) {
    users.push({
      index, token: mint(FIRST_USER + index), joinAt: data.start + (index * JOIN_WINDOW_MS) / USERS,
      joinedAt: 0, queueToken: null,
    });
  }
  const joiningUntil = data.start + JOIN_WINDOW_MS;
  const seats = runList(data.seats);
  await Promise.all(users.map((user) => live(user, seats, joiningUntil, joiningUntil + MAX_WAIT_MS)));
}
