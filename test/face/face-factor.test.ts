// The face factor's rules with a stand-in engine (runs without packages/face): templates sealed at
// rest, two-step enrolment, verify against the confirmed template only, refusals as their own
// errors, removal; and the real loader's answer when the package is missing.
import t from 'tap';
import { ServiceError } from '../../src/errors.js';
import { SecretBox } from '../../src/keys/secret-box.js';
import { FaceEngineLoader, type FaceEngine } from '../../src/services/face-engine.js';
import { FACE_SECRET_KIND, FaceFactor } from '../../src/services/face-factor.js';
import { descriptorDistance, sameFace } from '../../src/services/face-match.js';
import type { DescribeResult, FaceRefusal } from '../../src/services/face-pool.js';
import { ALICE, buildKit } from '../helpers/services.js';

/** A descriptor per "image": the image text names a person and a small offset, or a refusal. */
function vector(person: number, wobble = 0): Float32Array {
  const v = new Float32Array(128);
  v[person] = 1;
  v[127] = wobble;
  return v;
}

function fakeEngine(): FaceEngine & { calls: number } {
  const engine = {
    calls: 0,
    async start() {
      return true;
    },
    async describe(bytes: Uint8Array): Promise<DescribeResult> {
      engine.calls++;
      const text = Buffer.from(bytes).toString('utf8');
      if (text.startsWith('refuse:')) return { ok: false, code: text.slice(7) as FaceRefusal };
      const [person, wobble] = text.split(':').map(Number);
      return { ok: true, descriptor: vector(person!, wobble ?? 0), width: 300, height: 400 };
    },
    async close() {},
  };
  return engine;
}

const img = (s: string): string => Buffer.from(s).toString('base64');

t.test('the face factor', async (t) => {
  const kit = await buildKit(t);
  const engine = fakeEngine();
  const face = new FaceFactor({ store: kit.store, secrets: new SecretBox(kit.keys, kit.random), clock: () => kit.clock.now, engine, audit: kit.audit, threshold: 0.4 });
  const alice = kit.users[ALICE.email]!;
  const subject = { userId: alice.id, email: alice.email };
  const ctx = { ip: '192.0.2.10', mac: '00:1a:2b:3c:4d:5e', sessionId: null, log: kit.log };
  const verify = (proof: string) => kit.store.transaction((tx) => face.verify(alice.id, proof, tx, kit.clock.now));

  await t.test('each unusable image is its own error', async (t) => {
    const kinds: Array<[FaceRefusal, string]> = [
      ['not_jpeg', 'face-image'],
      ['too_large', 'face-image'],
      ['no_face', 'face-none'],
      ['several_faces', 'face-several'],
      ['face_too_small', 'face-small'],
    ];
    for (const [code, kind] of kinds) {
      await t.rejects(face.enrollStart(subject, ctx, img(`refuse:${code}`)), { name: 'ServiceError', kind }, code);
    }
    await t.rejects(face.enrollStart(subject, ctx), { name: 'ServiceError', kind: 'invalid' }, 'no image at all');
    t.same(await kit.store.listFactors(alice.id), []);
  });

  await t.test('a pending enrolment proves nothing; a matching second image confirms it', async (t) => {
    t.same(await face.enrollStart(subject, ctx, img('3')), { confirmed: false });
    const sealed = await kit.store.getSecret(alice.id, FACE_SECRET_KIND);
    t.ok(sealed, 'the template is stored');
    t.notOk(sealed!.sealed.includes(Buffer.from(new Float32Array(vector(3)).buffer)), 'and not in the clear');
    t.equal(await verify(img('3')), 'wrong', 'pending: not yet a factor');
    await t.rejects(face.enrollConfirm(subject, img('5'), ctx), { name: 'ServiceError', kind: 'auth-failed' }, 'another face');
    t.same(await face.enrollConfirm(subject, img('3:0.1'), ctx), { confirmed: true });
    await t.rejects(face.enrollStart(subject, ctx, img('3')), { name: 'ServiceError', kind: 'conflict' }, 'no replacing a confirmed face');
  });

  await t.test('verify compares with the threshold, and uses what prepare computed', async (t) => {
    t.equal(await verify(img('3:0.39')), 'ok');
    t.equal(await verify(img('3:0.4')), 'wrong', 'at the threshold is a reject');
    t.equal(await verify(img('4')), 'wrong');
    t.equal(await verify(img('refuse:no_face')), 'wrong', 'an unusable image inside a flow is just wrong');
    const prepared = await face.prepare(img('3:0.2'));
    const before = engine.calls;
    t.equal(await kit.store.transaction((tx) => face.verify(alice.id, 'ignored', tx, kit.clock.now, prepared)), 'ok');
    t.equal(engine.calls, before, 'no inference inside the transaction');
  });

  await t.test('removal needs the face, and deletes the template', async (t) => {
    await t.rejects(face.removeWithProof(subject, img('4'), ctx), { name: 'ServiceError', kind: 'auth-failed' });
    t.equal(await face.removeWithProof(subject, img('3'), ctx), true);
    t.equal(await kit.store.getSecret(alice.id, FACE_SECRET_KIND), undefined);
    t.same(await kit.store.listFactors(alice.id), []);
    t.equal(await face.removeWithProof(subject, img('3'), ctx), false);
  });
});

t.test('distances: identical is 0, and the threshold is strict', async (t) => {
  t.equal(descriptorDistance(vector(1), vector(1)), 0);
  t.equal(sameFace(vector(1), vector(1, 0.3), 0.3), false);
  t.equal(sameFace(vector(1), vector(1, 0.29), 0.3), true);
});

t.test('without the package the engine says why, once, and refuses as unavailable', async (t) => {
  const lines: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  const log = {
    error: (fields: Record<string, unknown>, msg: string) => lines.push({ msg, fields }),
    warn() {},
    info() {},
    debug() {},
  } as unknown as ConstructorParameters<typeof FaceEngineLoader>[1];
  const engine = new FaceEngineLoader({ packageDir: '/nonexistent/face', workers: 1, queueMax: 1, engine: { minConfidence: 0.5, minFacePixels: 80, maxPixels: 1e6, maxSide: 1280 } }, log);
  t.equal(await engine.start(), false);
  await t.rejects(engine.describe(Buffer.from('x')), new ServiceError('face-unavailable', 'the face factor is not available on this server'));
  t.equal(lines.length, 1);
  t.match(lines[0], { msg: /face factor unavailable.*npm run face:install/, fields: { packageDir: '/nonexistent/face' } });
  await engine.close();
});
