import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';
import { LogSink } from '../helpers/log-sink.js';
import { enrolTotp, loginWithTotp, recoveryPasscode } from '../helpers/totp.js';

// Secrets of the second factors are never logged, audited or stored in the clear: the TOTP secret
// (raw, base32, in the otpauth URI and the QR code), codes, recovery codes, a recovered password.

t.test('the logger censors the new secret fields wherever a whole object is logged', async (t) => {
  const sink = new LogSink();
  const log = createLogger('trace', sink);
  const fields = { secret: 'JBSWY3DPEHPK3PXP', uri: 'otpauth://totp/x?secret=JBSWY3DPEHPK3PXP', qrPng: 'iVBORw0K', qrText: '█▀▀█', totp: '492039', recoveryCode: 'K7M2Q-XHP4R', recoveryCodes: ['K7M2Q-XHP4R'], newPassword: 'a brand new passphrase' };
  log.info({ ...fields, req: fields, deep: { req: fields } }, 'a careless line');
  for (const [name, value] of Object.entries(fields)) {
    const text = Array.isArray(value) ? value[0]! : value;
    t.notOk(sink.text.includes(text), `${name} is censored at every depth`);
  }
  t.equal(sink.lines[0]!.secret, '[redacted]');
});

t.test('over the wire at trace level: no secret, code or recovery code in a log line, an audit row or the database file', async (t) => {
  const h = await startHarness(t, { config: { alerts: { newDevice: false } } });
  const client = await h.connect();
  const { token } = await h.login(client);
  const started = await client.send<Record<string, unknown>>({ code: 22, token, mac: MAC });
  const enrolled = await enrolTotp(h, client, token);
  const codes: string[] = [enrolled.code()];
  h.clock.advance(30_000);
  codes.push(enrolled.code());
  t.match(await loginWithTotp(h, client, enrolled.code()), { status: 'ok' });
  const passcode = await recoveryPasscode(h, client, ALICE.email);
  const newPassword = 'zebra-Quokka-7731-recovered';
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword, recoveryCode: enrolled.recoveryCodes[0] }), { status: 'ok' });
  await client.close();
  await h.app.audit.flush();
  const rows = JSON.stringify(await h.auditRows());
  t.ok(rows.includes('totp.confirm') && rows.includes('recovery.password'), 'the audit rows were read');
  await h.app.close();
  const files = readdirSync(h.dataDir, { recursive: true, encoding: 'utf8' })
    .map((f) => path.join(h.dataDir, f))
    .filter((f) => statSync(f).isFile() && !/server\.key/.test(f));
  t.ok(files.some((f) => f.endsWith('.db')), 'the database file was read');
  const secrets: Record<string, string | Buffer> = {
    'base32 secret': enrolled.base32,
    'raw secret': enrolled.secret,
    'otpauth URI': started.uri as string,
    'recovered password': newPassword,
    ...Object.fromEntries(enrolled.recoveryCodes.map((c, i) => [`recovery code ${i}`, c])),
    ...Object.fromEntries(enrolled.recoveryCodes.map((c, i) => [`recovery code ${i} as stored`, c.replace('-', '')])),
  };
  for (const [what, secret] of Object.entries(secrets)) {
    const text = typeof secret === 'string' ? secret : secret.toString('latin1');
    t.notOk(rows.includes(text), `the ${what} is in no audit row`);
    t.notOk(h.logs.text.includes(text), `the ${what} is in no log line`);
    for (const f of files) t.notOk(readFileSync(f).includes(secret), `the ${what} is not in ${path.basename(f)}`);
  }
  for (const code of codes) t.notOk(h.logs.raw.some((l) => l.includes(`"${code}"`)), `the code ${code} is in no log line`);
});
