import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createLogger } from '../../src/log.js';
import { MailQueue, passcodeMail, type DeliveryResult, type MailMessage, type Mailer } from '../../src/mail/mailer.js';
import { LogSink } from '../helpers/log-sink.js';
import { countingMetrics, RecordingMailer } from '../helpers/services.js';

// The queue's own timing (retry delays, drain deadlines) is real time, kept to tens of milliseconds.

const MESSAGE = passcodeMail({ to: 'alice@example.com', passcode: 'K7M2QX', expiresAt: Date.UTC(2026, 10, 21), seenIp: '192.0.2.1', reportedIp: null, mac: '00:1a:2b:3c:4d:5e' });

function setup(t: Test, mailer: Mailer = new RecordingMailer(), opts: { attempts?: number; retryDelayMs?: number } = {}) {
  const logs = new LogSink();
  const metrics = countingMetrics();
  const queue = new MailQueue(mailer, createLogger('info', logs), { metrics, ...opts });
  // The queue's retry timers are unref'd (they must not hold a stopping process open): something
  // must keep this process alive while a test waits on drain() through a retry delay.
  const alive = setInterval(() => undefined, 60_000);
  t.teardown(async () => {
    await queue.drain(1000);
    clearInterval(alive);
  });
  return { queue, logs, metrics };
}

/** A Mailer whose sends wait until `release()`. */
function heldMailer(): Mailer & { release(): void; started: number } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const mailer = {
    started: 0,
    async send() {
      mailer.started++;
      await gate;
    },
    close() {},
    release: () => release(),
  };
  return mailer;
}

t.test('a failing message is retried after a delay that grows with each attempt, then reported failed', async (t) => {
  const mailer = new RecordingMailer();
  mailer.fail = 10;
  const { queue, logs, metrics } = setup(t, mailer, { attempts: 3, retryDelayMs: 20 });
  const results: DeliveryResult[] = [];
  queue.enqueue(MESSAGE, 'passcode', (r) => results.push(r));
  t.equal(await queue.drain(), 0, 'drain waits for the last attempt');

  t.same(results, [{ ok: false, attempts: 3, error: '421 try again later' }]);
  const at = mailer.attempts.map((a) => a.at);
  t.equal(at.length, 3);
  // A timer may fire up to a millisecond early by the clock performance.now() reads.
  t.ok(at[1]! - at[0]! >= 19, `first retry after the delay (${(at[1]! - at[0]!).toFixed(1)} ms)`);
  t.ok(at[2]! - at[1]! >= 39, `second retry after twice the delay (${(at[2]! - at[1]!).toFixed(1)} ms)`);
  t.same([queue.sent, queue.failed], [0, 1]);
  t.same([metrics.counts['mail.retried'], metrics.counts['mail.failed'], metrics.counts['mail.sent']], [2, 1, undefined]);
  t.same(logs.find({ kind: 'passcode' }).map((l) => [l.level, l.attempt, l.msg]), [
    [40, 1, 'mail attempt failed; retrying'],
    [40, 2, 'mail attempt failed; retrying'],
    [50, 3, 'mail failed'],
  ]);
  t.notOk(logs.text.includes('K7M2QX'), 'the body (the passcode) is never logged');
});

t.test('a retry that goes through reports success with the attempts it took', async (t) => {
  const mailer = new RecordingMailer();
  mailer.fail = 1;
  const { queue, metrics } = setup(t, mailer, { retryDelayMs: 1 });
  const results: DeliveryResult[] = [];
  queue.enqueue(MESSAGE, 'passcode', (r) => results.push(r));
  await queue.drain();
  t.same(results, [{ ok: true, attempts: 2 }]);
  t.same(mailer.sent, [MESSAGE]);
  t.same([queue.sent, queue.failed, metrics.counts['mail.sent']], [1, 0, 1]);
});

t.test('drain waits for later() work, and for the mail that work queues', async (t) => {
  const mailer = new RecordingMailer();
  const { queue, logs } = setup(t, mailer);
  const order: string[] = [];
  queue.later(async () => {
    order.push('later');
    await sleep(20);
    queue.enqueue(MESSAGE, 'passcode', () => order.push('delivered'));
  });
  queue.later(() => {
    throw new Error('could not store the passcode');
  });
  order.push('answered');
  t.equal(mailer.sent.length, 0);
  t.equal(await queue.drain(), 0);
  t.same(order, ['answered', 'later', 'delivered'], 'later() runs after the caller, drain after the mail it queued');
  t.equal(mailer.sent.length, 1);
  t.match(logs.find({ msg: 'deferred mail work failed' })[0], { level: 50, err: 'could not store the passcode' }, 'a failing job is logged, not thrown');
});

t.test('drain with a deadline answers how many are still in flight when it passes', async (t) => {
  const mailer = heldMailer();
  const { queue, logs } = setup(t, mailer);
  queue.enqueue(MESSAGE, 'passcode');
  queue.enqueue({ ...MESSAGE, to: 'bob@example.com' }, 'passcode');
  const started = performance.now();
  t.equal(await queue.drain(30), 2);
  const waited = performance.now() - started;
  t.ok(waited >= 29 && waited < 1000, `gave up after the deadline (${waited.toFixed(1)} ms)`);
  t.match(logs.find({ pending: 2 })[0], { level: 50, msg: 'shutdown: mail still queued was not delivered' });
  mailer.release();
  t.equal(await queue.drain(1000), 0, 'released, they finish');
  t.equal(queue.sent, 2);
});

t.test('a delivery callback that throws is logged and does not stop the queue; close() closes the mailer', async (t) => {
  const mailer = new RecordingMailer();
  const { queue, logs } = setup(t, mailer);
  queue.enqueue(MESSAGE, 'passcode', () => {
    throw new Error('audit sink broke');
  });
  queue.enqueue({ ...MESSAGE, to: 'bob@example.com' }, 'passcode');
  t.equal(await queue.drain(), 0);
  t.equal(mailer.sent.length, 2);
  t.match(logs.find({ msg: 'mail delivery callback failed' })[0], { kind: 'passcode', err: 'audit sink broke' });
  queue.close();
  t.equal(mailer.closed, true);
});

t.test('the passcode mail names the passcode, its expiry, and where it was asked from', async (t) => {
  const m: MailMessage = passcodeMail({ ...MESSAGE, passcode: 'K7M2QX', expiresAt: Date.UTC(2026, 10, 21), seenIp: '192.0.2.1', reportedIp: '10.0.0.5', mac: '00:1a:2b:3c:4d:5e' });
  t.equal(m.subject, 'Your Hellwall passcode');
  t.match(m.text, 'Your Hellwall passcode is: K7M2QX');
  t.match(m.text, 'It expires at 2026-11-21T00:00:00.000Z and can be used once.');
  t.match(m.text, 'Requested from IP address 192.0.2.1 (the client reported 10.0.0.5), device MAC 00:1a:2b:3c:4d:5e.');
  t.notMatch(passcodeMail({ ...MESSAGE, passcode: 'K7M2QX', expiresAt: 0, seenIp: '192.0.2.1', reportedIp: '192.0.2.1', mac: 'm' }).text, 'reported', 'the same address is not repeated');
});
