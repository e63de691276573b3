import { ScureBase32Plugin } from 'otplib';
import type { HellwallClient } from '../../src/client/client.js';
import { totpCode } from '../../src/primitives/totp.js';
import type { Harness } from './harness.js';
import { ALICE, MAC } from './harness.js';
import { passcodeFrom, type ReceivedMail } from './smtp-sink.js';

// TOTP over the wire for the integration tests: enrol, and log in with a code.

const base32 = new ScureBase32Plugin();

export interface Enrolled {
  /** The raw secret, decoded from the base32 the server showed. */
  readonly secret: Buffer;
  readonly base32: string;
  readonly recoveryCodes: string[];
  /** The code for `at` (default: the harness clock now). */
  code(at?: number): string;
}

/** The next mail to `to` after index `since` whose raw text matches `re` (alerts may come between). */
export async function mailMatching(h: Harness, to: string, since: number, re: RegExp): Promise<ReceivedMail> {
  for (let from = since; ; ) {
    const mail = await h.smtp.waitFor(to, from);
    if (re.test(mail.raw)) return mail;
    from = h.smtp.messages.indexOf(mail) + 1;
  }
}

/** totp.enroll then totp.confirm with a code for the harness clock; throws on any refusal. */
export async function enrolTotp(h: Harness, client: HellwallClient, token: string, mac = MAC): Promise<Enrolled> {
  const started = await client.send<Record<string, unknown>>({ code: 22, token, mac });
  if (started.status !== 'ok') throw new Error(`totp.enroll failed: ${JSON.stringify(started)}`);
  const secret = Buffer.from(base32.decode(started.secret as string));
  const code = (at = h.clock.now): string => totpCode(secret, at);
  const confirmed = await client.send<Record<string, unknown>>({ code: 23, token, mac, totp: code() });
  if (confirmed.status !== 'ok') throw new Error(`totp.confirm failed: ${JSON.stringify(confirmed)}`);
  return { secret, base32: started.secret as string, recoveryCodes: confirmed.recoveryCodes as string[], code };
}

/**
 * passcode.request, the passcode from its mail, then passcode.auth with `totp`; answers the raw
 * response (passcode.request's, when that was refused).
 */
export async function loginWithTotp(
  h: Harness,
  client: HellwallClient,
  totp: string | undefined,
  user: { email: string; phone: string; password: string } = ALICE,
  mac = MAC,
): Promise<Record<string, unknown> & { status: string }> {
  const since = h.smtp.messages.length;
  const req = await client.requestPasscode({ email: user.email, password: user.password, mac });
  if (req.status !== 'ok') return req as unknown as Record<string, unknown> & { status: string };
  const passcode = passcodeFrom(await mailMatching(h, user.email, since, /Subject: Your Hellwall passcode/));
  return client.send({ code: 2, email: user.email, phone: user.phone, password: user.password, passcode, mac, ...(totp !== undefined && { totp }) });
}

/** recovery.request, then the recovery passcode from its mail. */
export async function recoveryPasscode(h: Harness, client: HellwallClient, email: string, mac = MAC): Promise<string> {
  const since = h.smtp.messages.length;
  const res = await client.send<Record<string, unknown>>({ code: 25, email, mac, clientTime: h.clock.now });
  if (res.status !== 'ok') throw new Error(`recovery.request failed: ${JSON.stringify(res)}`);
  return passcodeFrom(await mailMatching(h, email, since, /Subject: Your Hellwall recovery passcode/));
}
