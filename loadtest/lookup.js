// A realistic read mix over the seeded catalogue: 20 % list pages, 50 % concert details
// skewed toward popular ids, 20 % a concert's schedules, 10 % available seats of a schedule
// (MIX and SKEW in lib/catalogue.js change the mix and the skew).
//
// Executor from EXECUTOR and its knobs (lib/executors.js); the default is
// constant-arrival-rate at 100/s for 1m with 50..200 VUs. Examples:
//
//   loadtest/run lookup                                        # 100/s for 1m
//   RATE=194.4 DURATION=10m loadtest/run lookup --stack postgres
//   EXECUTOR=ramping-arrival-rate STAGES=10s:50,20s:400,10s:0 loadtest/run lookup
//   EXECUTOR=constant-vus VUS=20 DURATION=30s loadtest/run lookup
//
// Or against a server you started: k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/lookup.js

import { assertCatalogue, lookupMix, perRouteDurations } from './lib/catalogue.js';
import { describeScenario, scenarioFromEnv } from './lib/executors.js';

const lookup = scenarioFromEnv({
  executor: 'constant-arrival-rate', rate: 100, duration: '1m', vus: 20,
  preAllocatedVUs: 50, maxVUs: 200,
});

export const options = {
  scenarios: { lookup },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate>0.999'],
    ...perRouteDurations(),
  },
};

export function setup() {
  assertCatalogue();
  console.log(describeScenario('lookup', lookup));
}

export default function () {
  lookupMix();
}
