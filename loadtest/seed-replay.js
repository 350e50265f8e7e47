// The original system's load test, replayed: k6's constant-arrival-rate executor at 97
// iterations/s for 10 minutes with 200 pre-allocated VUs (and at most 200), one concert
// lookup per iteration (the detail of a random concert).
//
// PROFILE=original  97/s, the original's figure.
// PROFILE=peak      194.4/s, the corrected peak. 100,000 DAU x 20 visits = 2,000,000
//                   requests a day; 70 % of them in a 2-hour peak is 1,400,000 / 7,200 s =
//                   194.4/s. The original's 97/s is 70 % spread over 4 hours, half the load
//                   it meant to test.
//
// DURATION and RATE override the profile (for short runs while developing);
// PRE_ALLOCATED_VUS and MAX_VUS the VUs. The executor is the original's and cannot change.
//
// TARGET=floor sends the same load to the floor server (../shared/bench/floor, one Redis GET
// per request on /mux/{id}, BASE_URL http://127.0.0.1:18080 by default), so that the floor's
// figures come from this very script.
//
// Thresholds: no failed request, no dropped iteration (the original dropped 369, its VUs all
// stuck on slow answers), every check, and p(95) < 5 ms, p(99) < 20 ms. p(95) < 5 ms is the
// starting bound of the brief; p(99) < 20 ms is set from measurement (short runs on a 2-core
// machine give a p(99) of a few ms, and the bound leaves room for a shared machine's noise)
// and may be revised when the 10-minute runs are in.

import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, CONCERTS, envString } from './lib/config.js';
import { assertCatalogue, getConcert, uniformId } from './lib/catalogue.js';
import { describeScenario, scenarioFromEnv } from './lib/executors.js';

const PROFILES = { original: 97, peak: 194.4 };
const PROFILE = envString('PROFILE', 'original');
if (!(PROFILE in PROFILES)) {
  throw new Error(`PROFILE=${PROFILE}: choose ${Object.keys(PROFILES).join(' or ')}`);
}
if (envString('EXECUTOR', 'constant-arrival-rate') !== 'constant-arrival-rate') {
  throw new Error('seed-replay replays the original constant-arrival-rate run; use lookup.js for other executors');
}

const TARGET = envString('TARGET', 'marquee');
if (!['marquee', 'floor'].includes(TARGET)) throw new Error(`TARGET=${TARGET}: marquee or floor`);
const FLOOR_URL = envString('BASE_URL', 'http://127.0.0.1:18080').replace(/\/+$/, '');
const FLOOR_ROUTE = '/mux/{id}';

const replay = scenarioFromEnv({
  executor: 'constant-arrival-rate', rate: PROFILES[PROFILE], timeUnit: '1s',
  duration: '10m', preAllocatedVUs: 200, maxVUs: 200,
});

export const options = {
  scenarios: { replay },
  thresholds: {
    http_req_failed: ['rate==0'],
    dropped_iterations: ['count==0'],
    checks: ['rate>0.999'],
    http_req_duration: ['p(95)<5', 'p(99)<20'],
  },
};

function floorLookup(id) {
  const res = http.get(`${FLOOR_URL}/mux/${id}`, { tags: { name: FLOOR_ROUTE } });
  check(res, {
    'floor: status 200': (r) => r.status === 200,
    'floor: a concert': (r) => typeof r.body === 'string' && r.body.startsWith('{"id":'),
  });
}

export function setup() {
  if (TARGET === 'floor') {
    const res = http.get(`${FLOOR_URL}/mux/1`, { tags: { name: FLOOR_ROUTE } });
    if (res.status !== 200) throw new Error(`the floor at ${FLOOR_URL} answered ${res.status}`);
  } else {
    assertCatalogue();
  }
  console.log(`${describeScenario('replay', replay)}; profile ${PROFILE}; target ${TARGET} at ${TARGET === 'floor' ? FLOOR_URL : BASE_URL}`);
}

export default function () {
  const id = uniformId(CONCERTS);
  if (TARGET === 'floor') floorLookup(id);
  else getConcert(id);
}
