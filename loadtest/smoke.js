// A 10-second sanity run of the lookup mix at 20 requests/s: every request must succeed and
// every check must hold. CI runs it against the PostgreSQL + Redis stack:
//
//   loadtest/run smoke --stack postgres
//
// RATE and DURATION override the defaults; EXECUTOR too, though CI uses the default.

import { assertCatalogue, lookupMix, perRouteDurations } from './lib/catalogue.js';
import { describeScenario, scenarioFromEnv } from './lib/executors.js';

const smoke = scenarioFromEnv({
  executor: 'constant-arrival-rate', rate: 20, duration: '10s', vus: 5,
  preAllocatedVUs: 10, maxVUs: 50,
});

export const options = {
  scenarios: { smoke },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    ...perRouteDurations(),
  },
};

export function setup() {
  assertCatalogue();
  console.log(describeScenario('smoke', smoke));
}

export default function () {
  lookupMix();
}
