// Lists of ids as setup data. k6 hands setup()'s return value to every VU as JSON, which each
// VU parses before its first iteration: 18,000 seat ids parsed by each of 200 VUs stalled k6
// for 300 ms at the start of a run. As runs of consecutive ids, a list is a few numbers per
// schedule.

/** Ids as runs of consecutive ids, [[first, length], ...], in their order. */
export function toRuns(ids) {
  const runs = [];
  for (const id of ids) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] + last[1] === id) last[1] += 1;
    else runs.push([id, 1]);
  }
  return runs;
}

/**
 * The ids of `runs` by index: `at(i)` is the i-th id (0-based), `length` how many there are.
 * Build it once per VU (it keeps where each run starts) and look up by binary search.
 */
export function runList(runs) {
  const starts = [];
  let length = 0;
  for (const [, count] of runs) {
    starts.push(length);
    length += count;
  }
  return {
    length,
    at(index) {
      let lo = 0;
      let hi = runs.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid] <= index) lo = mid;
        else hi = mid - 1;
      }
      return runs[lo][0] + (index - starts[lo]);
    },
  };
}
