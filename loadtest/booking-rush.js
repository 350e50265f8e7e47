// A ticket opening: a spike of users races for the seats of one schedule, then pays.
//
//   loadtest/run booking-rush [--stack embedded|postgres]
//
// The run script mints one bearer token per user beforehand with `marquee token` and passes
// them in TOKENS_FILE (a JSON array); after the run it checks on the tables that no seat was
// sold twice and that every sold seat has exactly one payment.
//
// Knobs: SCHEDULE_ID (default 1), START_RATE (10/s), PEAK_RATE (200/s), RAMP (10s), HOLD_AT_PEAK
// (20s), PRE_ALLOCATED_VUS (100), MAX_VUS (400).
//
// A 409 (seat taken, hold limit reached) is the expected answer of a lost race, not a
// failure: http.setResponseCallback counts 2xx, 402 and 409 as expected responses, so
// http_req_failed measures real failures only (5xx, timeouts, 4xx other than those).

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';

import { BASE_URL, envInt, envString } from './lib/config.js';

const SCHEDULE_ID = envInt('SCHEDULE_ID', 1, 1);
const tokens = new SharedArray('tokens', () => JSON.parse(open(envString('TOKENS_FILE', 'tokens.json'))));

const held = new Counter('rush_holds');
const lost = new Counter('rush_seat_taken');
const paid = new Counter('rush_payments');

http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 402, 409));

export const options = {
  scenarios: {
    rush: {
      executor: 'ramping-arrival-rate',
      startRate: envInt('START_RATE', 10, 1),
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_ALLOCATED_VUS', 100, 1),
      maxVUs: envInt('MAX_VUS', 400, 1),
      stages: [
        { target: envInt('PEAK_RATE', 200, 1), duration: envString('RAMP', '10s') },
        { target: envInt('PEAK_RATE', 200, 1), duration: envString('HOLD_AT_PEAK', '20s') },
        { target: 0, duration: '5s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate>0.999'],
  },
};

export function setup() {
  if (tokens.length === 0) throw new Error('TOKENS_FILE holds no tokens');
  const response = http.get(`${BASE_URL}/api/v1/schedules/${SCHEDULE_ID}/seats?status=available`);
  if (response.status !== 200) throw new Error(`seats of schedule ${SCHEDULE_ID}: ${response.status}`);
  const seats = response.json().map((seat) => seat.id);
  if (seats.length === 0) throw new Error(`schedule ${SCHEDULE_ID} has no available seat`);
  console.log(`booking-rush: ${tokens.length} users, ${seats.length} seats of schedule ${SCHEDULE_ID}`);
  return { seats };
}

function auth(token, extra = {}) {
  return { headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...extra } };
}

export default function (data) {
  const iteration = exec.scenario.iterationInTest;
  const user = iteration % tokens.length;
  const token = tokens[user];
  const seat = data.seats[Math.floor(Math.random() * data.seats.length)];

  const hold = http.post(`${BASE_URL}/api/v1/reservations`, JSON.stringify({ seatId: seat }), {
    ...auth(token),
    tags: { name: 'POST /api/v1/reservations' },
  });
  const answered = check(hold, {
    'hold: 201 or 409': (r) => r.status === 201 || r.status === 409,
  });
  if (!answered || hold.status !== 201) {
    if (hold.status === 409) lost.add(1);
    return;
  }
  held.add(1);
  const reservation = hold.json();

  const charge = http.post(
    `${BASE_URL}/api/v1/wallet/charge`,
    JSON.stringify({ amount: reservation.price }),
    { ...auth(token, { 'Idempotency-Key': `charge-${reservation.id}` }), tags: { name: 'POST /api/v1/wallet/charge' } },
  );
  check(charge, { 'charge: 200': (r) => r.status === 200 });

  const payment = http.post(`${BASE_URL}/api/v1/reservations/${reservation.id}/payment`, null, {
    ...auth(token, { 'Idempotency-Key': `pay-${reservation.id}` }),
    tags: { name: 'POST /api/v1/reservations/{id}/payment' },
  });
  const confirmed = check(payment, {
    'pay: 200 CONFIRMED': (r) => r.status === 200 && r.json().status === 'CONFIRMED',
  });
  if (confirmed) paid.add(1);
}

export function teardown(data) {
  const sold = http.get(`${BASE_URL}/api/v1/schedules/${SCHEDULE_ID}/seats?status=sold`).json();
  console.log(`RUSH seats=${data.seats.length} sold=${sold.length}`);
}
