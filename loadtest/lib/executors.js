// Builds one k6 scenario from the environment, so every script can be driven by any of the
// four executors the original load test described:
//
//   EXECUTOR            constant-vus | constant-arrival-rate | ramping-vus | ramping-arrival-rate
//   VUS                 constant-vus: virtual users
//   DURATION            constant-*: how long (a k6 duration: 30s, 10m, 1m30s)
//   RATE                *-arrival-rate: iterations per TIME_UNIT; may be fractional (194.4)
//   TIME_UNIT           *-arrival-rate: the period RATE is counted over (default 1s)
//   PRE_ALLOCATED_VUS   *-arrival-rate: VUs created before the start
//   MAX_VUS             *-arrival-rate: the most VUs k6 may add when iterations queue up;
//                       an iteration that finds no free VU is a dropped_iteration
//   STAGES              ramping-*: "duration:target,..." e.g. "30s:50,1m:100,30s:0"; targets
//                       are VUs (ramping-vus) or iterations per TIME_UNIT (ramping-arrival-rate).
//                       Default: ramp to the target over 10s, hold it for DURATION, ramp down
//                       over 10s, where the target is VUS or RATE.
//   START_RATE          ramping-arrival-rate: the rate at the start (default 0)
//   START_VUS           ramping-vus: the VUs at the start (default 0)
//   GRACEFUL_STOP       how long iterations still running at the end may take (default 30s)
//
// A script passes its own defaults; the environment overrides them.

import { envDuration, envInt, envNumber, envString, parseDuration } from './config.js';

export const EXECUTORS = ['constant-vus', 'constant-arrival-rate', 'ramping-vus', 'ramping-arrival-rate'];

/** "30s:50,1m:100,30s:0" -> [{duration: "30s", target: 50}, ...] */
export function parseStages(text) {
  return text.split(',').map((part) => part.trim()).filter((part) => part !== '').map((part) => {
    const [duration, target, extra] = part.split(':');
    const value = Number(target);
    if (extra !== undefined || target === undefined || !Number.isFinite(value) || value < 0) {
      throw new Error(`STAGES: "${part}" is not duration:target, e.g. 30s:50`);
    }
    parseDuration(duration, 'STAGES');
    return { duration, target: value };
  });
}

// k6 takes arrival rates as whole numbers of iterations per timeUnit. A fractional rate
// (the corrected peak is 194.4/s) is kept exact by scaling the rate and the time unit by the
// same power of ten: 194.4 per 1s is 1944 per 10s, and k6 still spaces the iterations
// evenly (one every 5.14 ms), so nothing arrives in bursts.
export function wholeRates(rates, timeUnit) {
  const unitMs = parseDuration(timeUnit, 'TIME_UNIT');
  for (const factor of [1, 10, 100, 1000]) {
    if (rates.every((rate) => Math.abs(rate * factor - Math.round(rate * factor)) < 1e-9)) {
      return {
        scale: (rate) => Math.round(rate * factor),
        timeUnit: factor === 1 ? timeUnit : `${unitMs * factor}ms`,
      };
    }
  }
  throw new Error(`rates ${rates.join(', ')} have more than three decimals`);
}

/**
 * One k6 scenario from EXECUTOR and the knobs above.
 * `defaults` holds the script's defaults under the same names in camelCase
 * (executor, vus, duration, rate, timeUnit, preAllocatedVUs, maxVUs, stages, startRate,
 * startVUs) plus anything k6 accepts in a scenario (exec, tags, env).
 */
export function scenarioFromEnv(defaults = {}) {
  const {
    executor: defaultExecutor = 'constant-arrival-rate',
    vus = 10, duration = '30s', rate = 50, timeUnit = '1s', preAllocatedVUs = 50, maxVUs = 200,
    stages, startRate = 0, startVUs = 0, ...rest
  } = defaults;
  const executor = envString('EXECUTOR', defaultExecutor);
  if (!EXECUTORS.includes(executor)) {
    throw new Error(`EXECUTOR=${executor}: choose one of ${EXECUTORS.join(', ')}`);
  }
  const common = { ...rest, executor, gracefulStop: envDuration('GRACEFUL_STOP', '30s') };
  const theDuration = envDuration('DURATION', duration);
  const theVus = envInt('VUS', vus, 1);
  const theRate = envNumber('RATE', rate);
  if (theRate <= 0) throw new Error(`RATE=${theRate} must be above 0`);
  const theTimeUnit = envDuration('TIME_UNIT', timeUnit);
  const pre = envInt('PRE_ALLOCATED_VUS', preAllocatedVUs, 1);
  const max = Math.max(envInt('MAX_VUS', maxVUs, 1), pre);
  const theStages = (target) => parseStages(
    envString('STAGES', stages || `10s:${target},${theDuration}:${target},10s:0`),
  );

  switch (executor) {
    case 'constant-vus':
      return { ...common, vus: theVus, duration: theDuration };
    case 'ramping-vus':
      return {
        ...common,
        startVUs: envInt('START_VUS', startVUs, 0),
        stages: theStages(theVus).map((s) => ({ ...s, target: Math.round(s.target) })),
      };
    case 'constant-arrival-rate': {
      const whole = wholeRates([theRate], theTimeUnit);
      return {
        ...common,
        rate: whole.scale(theRate),
        timeUnit: whole.timeUnit,
        duration: theDuration,
        preAllocatedVUs: pre,
        maxVUs: max,
      };
    }
    default: { // ramping-arrival-rate
      const list = theStages(theRate);
      const start = envNumber('START_RATE', startRate);
      const whole = wholeRates([start, ...list.map((s) => s.target)], theTimeUnit);
      return {
        ...common,
        startRate: whole.scale(start),
        timeUnit: whole.timeUnit,
        preAllocatedVUs: pre,
        maxVUs: max,
        stages: list.map((s) => ({ duration: s.duration, target: whole.scale(s.target) })),
      };
    }
  }
}

/** One line that says what a scenario will do, for the log. */
export function describeScenario(name, s) {
  const perSecond = (r) => (r * 1000) / parseDuration(s.timeUnit);
  switch (s.executor) {
    case 'constant-vus':
      return `${name}: constant-vus ${s.vus} VUs for ${s.duration}`;
    case 'ramping-vus':
      return `${name}: ramping-vus from ${s.startVUs}: ${s.stages.map((x) => `${x.duration}->${x.target}`).join(', ')}`;
    case 'constant-arrival-rate':
      return `${name}: constant-arrival-rate ${perSecond(s.rate).toFixed(2)}/s for ${s.duration} (VUs ${s.preAllocatedVUs}..${s.maxVUs})`;
    default:
      return `${name}: ramping-arrival-rate from ${perSecond(s.startRate).toFixed(2)}/s: ${s.stages.map((x) => `${x.duration}->${perSecond(x.target).toFixed(2)}/s`).join(', ')} (VUs ${s.preAllocatedVUs}..${s.maxVUs})`;
  }
}
