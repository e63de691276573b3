import t from 'tap';
import { ServiceError } from '../../src/errors.js';
import { Limiter } from '../../src/primitives/limiter.js';

// The hashing queue's fairness, with jobs the test finishes by hand (no timing involved).

function gate(): { job: () => Promise<void>; open: () => void } {
  let open!: () => void;
  const p = new Promise<void>((resolve) => (open = resolve));
  return { job: () => p, open };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('waiting jobs are served round robin by key, high priority first', async (t) => {
  const limiter = new Limiter(1, 100, 100);
  const first = gate();
  const running = limiter.run(first.job, { key: 'x' });
  const served: string[] = [];
  const jobs = [
    ...['a1', 'a2', 'a3'].map((n) => limiter.run(async () => void served.push(n), { key: 'a' })),
    ...['b1', 'b2'].map((n) => limiter.run(async () => void served.push(n), { key: 'b' })),
    limiter.run(async () => void served.push('c1'), { key: 'c' }),
    limiter.run(async () => void served.push('login'), { key: 'a', priority: 'high' }),
  ];
  t.equal(limiter.queued, 7);
  first.open();
  await running;
  await Promise.all(jobs);
  t.same(served, ['login', 'a1', 'b1', 'c1', 'a2', 'b2', 'a3'], 'the login first, then one per key in turn');
  t.equal(limiter.queued, 0);
  t.equal(limiter.running, 0);
});

t.test('one key may hold at most perKeyMax queued jobs; others still get in', async (t) => {
  const limiter = new Limiter(1, 10, 2);
  const first = gate();
  const running = limiter.run(first.job, { key: 'a' });
  const queued = [limiter.run(async () => 1, { key: 'a' }), limiter.run(async () => 2, { key: 'a' })];
  await t.rejects(limiter.run(async () => 3, { key: 'a' }), ServiceError, 'the third from one key is busy');
  const other = limiter.run(async () => 'b', { key: 'b' });
  t.equal(limiter.queued, 3);
  first.open();
  await running;
  t.same(await Promise.all([...queued, other]), [1, 2, 'b']);
});

t.test('the global queue bound still holds', async (t) => {
  const limiter = new Limiter(1, 2, 2);
  const first = gate();
  const running = limiter.run(first.job, { key: 'a' });
  const queued = [limiter.run(async () => 1, { key: 'b' }), limiter.run(async () => 2, { key: 'c' })];
  const err = await limiter.run(async () => 3, { key: 'd' }).catch((e: unknown) => e);
  t.ok(err instanceof ServiceError && err.kind === 'busy', 'full: busy');
  first.open();
  await running;
  await Promise.all(queued);
  await turn();
  t.equal(limiter.running, 0);
});
