import t from 'tap';
import { groupOf, summarize } from '../../src/bench/cpu-profile.js';

t.test('functions are grouped by where they live', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['writeBuffer', '', 'TLS'],
    ['onStreamRead', 'node:internal/stream_base_commons', 'TLS'],
    ['parseFrame', 'file:///x/dist/codec/frame-decoder.js', 'framing'],
    ['parse', '', 'JSON'],
    ['validate17', '', 'validation'],
    ['Hmac', 'node:internal/crypto/hash', 'HMAC'],
    ['init', '', 'HMAC'],
    ['get', '', 'cache/store'],
    ['verified', 'file:///x/dist/services/session-cache.js', 'cache/store'],
    ['allows', 'file:///x/dist/services/policy.js', 'policy'],
    ['beforeCheck', 'file:///x/dist/services/throttle.js', 'limits'],
    ['request', 'file:///x/dist/ops/metrics.js', 'metrics'],
    ['write', 'file:///x/node_modules/pino/lib/proto.js', 'logging'],
    ['dispatch', 'file:///x/dist/server/dispatcher.js', 'dispatch'],
    ['(garbage collector)', '', 'GC'],
    ['(program)', '', 'other'],
  ];
  for (const [fn, url, group] of cases) t.equal(groupOf(fn, url), group, `${fn} ${url}`);
});

t.test('self time comes from the samples and their time deltas; idle is left out', async (t) => {
  const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0 });
  const profile = {
    nodes: [
      { id: 1, callFrame: frame('(root)') },
      { id: 2, callFrame: frame('writeBuffer') },
      { id: 3, callFrame: frame('(idle)') },
      { id: 4, callFrame: frame('Hmac', 'node:internal/crypto/hash') },
    ],
    startTime: 0,
    endTime: 10_000,
    // Each sample's time is the delta that follows it.
    samples: [2, 4, 3, 2],
    timeDeltas: [0, 1000, 2000, 3000],
  };
  const s = summarize(profile);
  t.equal(s.groups.TLS, 1, 'writeBuffer: 1 ms (its last sample has no delta after it)');
  t.equal(s.groups.HMAC, 2);
  t.equal(s.totalMs, 3, 'the idle 3 ms are not counted');
  t.same(
    s.top.map((x) => x.fn),
    ['Hmac', 'writeBuffer'],
  );
});
