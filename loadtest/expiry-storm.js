// Many cache keys expiring together, and what reaches the database when they do.
//
// setup() writes KEYS concert details into the cache at once (http.batch, so their TTLs start
// within a few milliseconds of each other), then the `reads` scenario reads those keys,
// uniformly, at a constant arrival rate while they expire. Run it through the run script,
// which starts Marquee with a short-TTL profile (concert TTL 20 s + 0..10 s, XFetch and the
// hot-key refresher off, so that nothing reloads a key before it expires) and one of two
// set-ups:
//
//   loadtest/run expiry-storm --setup protected   jitter 10 s
//   loadtest/run expiry-storm --setup no-jitter   jitter 0 s: every key expires at once
//
// Knobs: KEYS (default CONCERTS, every seeded concert), RATE (default 500 reads/s), DURATION
// (default 40s: longer than base TTL + jitter, so every key expires once during the run), SKEW
// (default 1, reads spread evenly over the keys; 3 favours low ids as lookup.js does), and the
// executor knobs of lib/executors.js.
//
// What the protections can show here: jitter spreads the reloads (the per-second peak).
// Single-flight, always on, makes the reads of one key that arrive while its load runs wait
// for that load (`coalesced` below) instead of loading it again. A concert load takes about
// 1-2 ms on an idle database, so at 500 reads/s over 120 keys (4 reads/s per key) such reads
// are rare; they appear with slow loads or very hot keys (KEYS=1, or a higher RATE).
//
// What the database saw: setup() and teardown() read Marquee's /metrics and teardown() prints
//
//   STORM loads=<n> checkouts=<m> misses=<..> coalesced=<..> stale=<..>
//
// where loads is the increase of marquee_cache_loads_total (every group, every outcome) and
// checkouts the increase of hikaricp_connections_acquire_seconds_count (one per database
// checkout) between the end of the warm-up and the end of the run. The same two numbers are
// in the summary as the counters storm_db_loads and storm_db_checkouts. A `probe` scenario
// reads /metrics once a second, so the summary also has the per-second peak
// (storm_db_loads_per_s, storm_db_checkouts_per_s: max), which is where jitter shows: the
// totals are about one load per key either way, the peak is not.

import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import {
  BASE_URL, CONCERTS, envDuration, envInt, envNumber, parseDuration,
} from './lib/config.js';
import { ROUTES, assertCatalogue, getConcert, popularId } from './lib/catalogue.js';
import { describeScenario, scenarioFromEnv } from './lib/executors.js';

const KEYS = envInt('KEYS', CONCERTS, 1);
if (KEYS > CONCERTS) throw new Error(`KEYS=${KEYS} is more than the CONCERTS=${CONCERTS} seeded`);
const DURATION = envDuration('DURATION', '40s');
const SKEW = envNumber('SKEW', 1);

const reads = scenarioFromEnv({
  executor: 'constant-arrival-rate', rate: 500, duration: DURATION, vus: 50,
  preAllocatedVUs: 100, maxVUs: 400, exec: 'read',
});
// The probe runs as long as the reads (for ramping executors: the sum of the stages).
const readsLast = reads.stages
  ? `${reads.stages.reduce((ms, s) => ms + parseDuration(s.duration), 0)}ms`
  : reads.duration;

const loads = new Counter('storm_db_loads');
const checkouts = new Counter('storm_db_checkouts');
const loadsPerSecond = new Trend('storm_db_loads_per_s');
const checkoutsPerSecond = new Trend('storm_db_checkouts_per_s');

export const options = {
  scenarios: {
    reads,
    probe: { executor: 'constant-vus', vus: 1, duration: readsLast, exec: 'probe', gracefulStop: '5s' },
  },
  // Warm every key in one go: up to 500 requests in flight at once.
  batch: 500,
  batchPerHost: 500,
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate>0.999'],
    // Always true: they make k6 print these series in the summary.
    'http_req_duration{scenario:reads}': ['max>=0'],
    storm_db_loads: ['count>=0'],
    storm_db_checkouts: ['count>=0'],
    storm_db_loads_per_s: ['max>=0'],
    storm_db_checkouts_per_s: ['max>=0'],
  },
};

const COUNTERS = {
  loads: 'marquee_cache_loads_total',
  checkouts: 'hikaricp_connections_acquire_seconds_count',
  misses: 'marquee_cache_misses_total',
  coalesced: 'marquee_cache_coalesced_total',
  stale: 'marquee_cache_stale_served_total',
};

/** Sums of the COUNTERS over all their series, from Marquee's Prometheus text. */
function scrape() {
  const res = http.get(`${BASE_URL}/metrics`, { tags: { name: '/metrics' } });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  const sums = {};
  for (const key of Object.keys(COUNTERS)) sums[key] = 0;
  for (const line of res.body.split('\n')) {
    if (line.startsWith('#')) continue;
    const name = line.split(/[{ ]/, 1)[0];
    for (const [key, metric] of Object.entries(COUNTERS)) {
      if (name === metric) sums[key] += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sums;
}

export function setup() {
  assertCatalogue();
  const started = Date.now();
  const requests = [];
  for (let id = 1; id <= KEYS; id += 1) {
    requests.push(['GET', `${BASE_URL}/api/v1/concerts/${id}`, null, { tags: { name: ROUTES.concert, phase: 'warm-up' } }]);
  }
  const answers = http.batch(requests);
  const failed = answers.filter((r) => r.status !== 200).length;
  if (failed > 0) throw new Error(`warm-up: ${failed} of ${KEYS} concert details failed`);
  console.log(`warmed ${KEYS} keys in ${Date.now() - started} ms; ${describeScenario('reads', reads)}`);
  return { before: scrape() };
}

export function read() {
  getConcert(popularId(KEYS, SKEW));
}

let last;
let lastAt;
export function probe() {
  const now = Date.now();
  const sums = scrape();
  if (last !== undefined) {
    const seconds = (now - lastAt) / 1000;
    loadsPerSecond.add((sums.loads - last.loads) / seconds);
    checkoutsPerSecond.add((sums.checkouts - last.checkouts) / seconds);
  }
  last = sums;
  lastAt = now;
  sleep(1 - ((Date.now() - now) % 1000) / 1000);
}

export function teardown(data) {
  const after = scrape();
  const delta = {};
  for (const key of Object.keys(COUNTERS)) delta[key] = after[key] - data.before[key];
  loads.add(delta.loads);
  checkouts.add(delta.checkouts);
  console.log(`STORM loads=${delta.loads} checkouts=${delta.checkouts} misses=${delta.misses} `
    + `coalesced=${delta.coalesced} stale=${delta.stale} keys=${KEYS}`);
}
